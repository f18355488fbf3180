package livekit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/roomerr"
)

// Per-call bounds on the foci (JWT services and their SFUs) a recording uses.
const (
	// maxFociPerCall is how many SFUs a recording joins at once.
	maxFociPerCall = 4
	// maxFociChecked is how many distinct foci a recording looks at; members naming more
	// are ignored (with one warning).
	maxFociChecked = 16
	// focusCheckTimeout bounds deciding whether one focus is trusted.
	focusCheckTimeout = 20 * time.Second
	// focusRecheck: a refused focus is looked at again after this long (its homeserver's
	// .well-known may have been unreachable).
	focusRecheck = 5 * time.Minute
	// maxRefusalNotices bounds the notices about refused foci per call.
	maxRefusalNotices = 3
	// Giving up on a focus whose SFU cannot be joined: after maxJoinFailures attempts in a
	// row a connection ends; it is started again after focusCooldown (doubling), at most
	// maxFocusRestarts times per call.
	maxJoinFailures  = 6
	focusCooldown    = time.Minute
	maxFocusRestarts = 3
)

// focusVerdict is what a recording knows about one focus.
type focusVerdict struct {
	owner   id.UserID
	done    bool  // the check finished
	err     error // nil: trusted
	at      time.Time
	told    bool // the room was told about the refusal
	checkin bool // a check is running
}

// focusRetire counts a focus's connections that gave up.
type focusRetire struct {
	n     int
	until time.Time
	told  bool
}

// vetNow decides on the foci at once (for Start), at most maxFociChecked of them, checked
// in parallel; trusted keeps their order.
func (b *Backend) vetNow(ctx context.Context, ts []matrixrtc.Transport) (trusted []matrixrtc.Transport, verdicts map[string]*focusVerdict) {
	if len(ts) > maxFociChecked {
		ts = ts[:maxFociChecked]
	}
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, focusCheckTimeout)
			defer cancel()
			errs[i] = b.trust.check(cctx, t.ServiceURL, t.Owner)
		}()
	}
	wg.Wait()
	verdicts = map[string]*focusVerdict{}
	now := time.Now()
	for i, t := range ts {
		verdicts[t.ServiceURL] = &focusVerdict{owner: t.Owner, done: true, err: errs[i], at: now}
		if errs[i] == nil {
			trusted = append(trusted, t)
		}
	}
	return trusted, verdicts
}

// refusalText explains a refused focus to the room.
func refusalText(ts []matrixrtc.Transport, verdicts map[string]*focusVerdict) string {
	var parts []string
	for _, t := range ts {
		if v := verdicts[t.ServiceURL]; v != nil && v.err != nil {
			parts = append(parts, v.err.Error())
		}
		if len(parts) == 3 {
			break
		}
	}
	return strings.Join(parts, "; ")
}

// trustedLocked returns the foci of ts the recording may join, in order, at most
// maxFociPerCall. It starts a check of each focus not seen before (the supervisor is poked
// when one finishes) and leaves out foci whose connections gave up and are cooling down.
// r.mu is held.
func (r *Recording) trustedLocked(ts []matrixrtc.Transport, now time.Time) []matrixrtc.Transport {
	var out []matrixrtc.Transport
	for _, t := range ts {
		v := r.foci[t.ServiceURL]
		if v == nil {
			if len(r.foci) >= maxFociChecked {
				if !r.fociCapWarned {
					r.fociCapWarned = true
					r.log.Warn().Int("max", maxFociChecked).Msg("Call members name too many LiveKit foci; ignoring the rest")
				}
				continue
			}
			v = &focusVerdict{owner: t.Owner}
			r.foci[t.ServiceURL] = v
		}
		if !v.checkin && (!v.done || (v.err != nil && now.Sub(v.at) > focusRecheck)) {
			v.checkin = true
			r.wg.Add(1)
			go r.vet(t, v)
		}
		if !v.done || v.err != nil {
			continue
		}
		if g, ok := r.retired[t.ServiceURL]; ok && (g.n > maxFocusRestarts || now.Before(g.until)) {
			continue
		}
		out = append(out, t)
	}
	if len(out) > maxFociPerCall {
		if !r.fociCapWarned {
			r.fociCapWarned = true
			r.log.Warn().Int("max", maxFociPerCall).Int("foci", len(out)).Msg("The call uses more LiveKit foci than a recording joins; joining the first ones")
		}
		out = out[:maxFociPerCall]
	}
	return out
}

// vet checks one focus and pokes the supervisor.
func (r *Recording) vet(t matrixrtc.Transport, v *focusVerdict) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(r.ctx, focusCheckTimeout)
	err := r.b.trust.check(ctx, t.ServiceURL, t.Owner)
	cancel()
	if r.ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	v.done, v.err, v.at, v.checkin = true, err, time.Now(), false
	r.mu.Unlock()
	if err != nil {
		r.refused(t.ServiceURL, v)
	}
	r.poke()
}

// refused logs a refused focus and tells the room, once per focus and at most
// maxRefusalNotices times per call.
func (r *Recording) refused(url string, v *focusVerdict) {
	r.mu.Lock()
	tell := !v.told && r.refusalNotices < maxRefusalNotices
	first := !v.told
	if tell {
		r.refusalNotices++
	}
	v.told = true
	err := v.err
	r.mu.Unlock()
	if !first {
		return
	}
	r.log.Warn().Err(err).Str("focus", url).Stringer("named_by", v.owner).Msg("Not using a LiveKit focus a call member names")
	if !tell {
		return
	}
	var fr *FocusRefusal
	var reason string
	if errors.As(err, &fr) {
		reason = fr.Reason
	} else {
		reason = roomerr.Clause(r.log.With().Str("focus", url).Logger(), err, "Could not check a LiveKit focus")
	}
	who := "A call member's"
	if v.owner != "" {
		who = string(v.owner) + "'s"
	}
	msg := fmt.Sprintf("%s call membership names the LiveKit service %s, which I do not use: %s. Media published only there is not recorded. An operator who trusts that service can list it in %s.",
		who, clip(url, 200), reason, TrustedServicesKey)
	go r.b.mx.Notice(context.WithoutCancel(r.ctx), r.room, msg)
}

// connectionEnded notes a connection that gave up joining its SFU: the focus cools down
// before it is tried again, and after maxFocusRestarts it is left for the rest of the call.
// r.mu is held.
func (r *Recording) connectionEndedLocked(c *connection, now time.Time) {
	url := c.transport.ServiceURL
	g := r.retired[url]
	g.n++
	g.until = now.Add(focusCooldown << min(g.n-1, 4))
	r.retired[url] = g
	if g.n <= maxFocusRestarts {
		r.log.Warn().Err(c.err()).Str("focus", url).Time("retry_at", g.until).Msg("Could not join this focus' SFU; trying again later")
		return
	}
	if g.told {
		return
	}
	g.told = true
	r.retired[url] = g
	id := roomerr.NewID()
	r.log.Error().Err(c.err()).Str("focus", url).Str("error_id", id).Msg("Giving up on this focus' SFU for this call")
	msg := fmt.Sprintf("I could not join the media server of the LiveKit service %s after several attempts (error %s in the operator's log), so media published there is not recorded.", clip(url, 200), id)
	go r.b.mx.Notice(context.WithoutCancel(r.ctx), r.room, msg)
}

package lifecycle

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

// Once-only actions on a recording that more than one loop or command may start: the
// expiry notice and the deletion (retention, !delete), the summary (its first delivery
// and its retries). One runs at a time per action and recording: in this process (the
// registry below), and in a fleet everywhere, under the lease once:<action>:<recording>,
// which the process renews while the action runs (one loop for all of them: onceRound)
// and gives back when it ends. Whoever gets the lease re-reads the row: another instance
// may have done the action already.

// Once-only actions, the middle of their lease's resource.
const (
	// onceRemoval covers what ends a recording's files: its expiry notice and its
	// deletion, by retention or by !delete. (Named "retention" since before !delete took
	// it, so that instances of both releases exclude each other.)
	onceRemoval = "retention"
	// onceSummary covers posting a recording's summary and editing it with the links
	// (its delivery, which waits for the uploads), and its retries.
	onceSummary = "summary"
)

// onceTTL is how long the lease on a once-only action runs without a renewal: how long
// an instance that died while it held one keeps the others from doing the action. The
// holder renews it every third of that while the action runs.
const onceTTL = 5 * time.Minute

// onceLeases starts the resource of every lease onceResource names.
const onceLeases = "once:"

// onceResource is the lease on one action on a recording that every instance's loops
// see: what names the action, then the recording.
func onceResource(action, recID string) string { return onceLeases + action + ":" + recID }

// onceActions are the once-only actions this process runs now, by their lease's resource:
// true once the lease is held (renewable), false while it is being taken.
type onceActions struct {
	mu   sync.Mutex
	held map[string]bool
}

// start notes res as running here (its lease not held yet); false: it runs here already.
func (o *onceActions) start(res string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.held[res]; ok {
		return false
	}
	if o.held == nil {
		o.held = map[string]bool{}
	}
	o.held[res] = false
	return true
}

// leased notes that res's lease is held: from now on it is renewed.
func (o *onceActions) leased(res string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.held[res]; ok {
		o.held[res] = true
	}
}

func (o *onceActions) end(res string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.held, res)
}

// renewing reports whether res runs here with its lease held.
func (o *onceActions) renewing(res string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.held[res]
}

// list lists the actions running here whose lease is held (those to renew).
func (o *onceActions) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for res, leased := range o.held {
		if leased {
			out = append(out, res)
		}
	}
	return out
}

// errOnceBusy: the action runs already, in this process or (holder set) on another
// instance of the fleet.
type errOnceBusy struct{ holder string }

func (e *errOnceBusy) Error() string {
	if e.holder == "" {
		return "the action runs already"
	}
	return "recorder instance " + e.holder + " does it"
}

// takeOnce makes this process the one to do action on the recording recID now and
// returns what ends it (call it once the action is done). An *errOnceBusy says the action
// runs already, here or on another instance; another error that the lease could not be
// read or taken (the database).
func (lc *Lifecycle) takeOnce(ctx context.Context, action, recID string) (release func(), err error) {
	res := onceResource(action, recID)
	if !lc.once.start(res) {
		return nil, &errOnceBusy{}
	}
	f := lc.fleet
	if f == nil {
		return sync.OnceFunc(func() { lc.once.end(res) }), nil
	}
	l, err := lc.db.AcquireLease(ctx, res, f.owner, f.onceTTL)
	if err != nil || !l.Held(f.owner) {
		lc.once.end(res)
		if err != nil {
			return nil, err
		}
		return nil, &errOnceBusy{holder: LeaseInstance(l.Owner)}
	}
	lc.once.leased(res)
	return sync.OnceFunc(func() {
		lc.once.end(res) // first: a renewal from here on finds it gone and says nothing
		rctx, cancel := lc.dbCtx()
		defer cancel()
		if _, err := lc.db.ReleaseLease(rctx, res, f.owner); err != nil {
			lc.log.Warn().Err(err).Str("recording", recID).Str("action", action).Msg("Could not give back the lease on a recording's action; it runs out")
		}
	}), nil
}

// claimOnce is takeOnce for the loops that every instance runs (retention, the retries
// of summaries): whether this process is the one to act now, and what ends it. A lease
// the database could not give is left to the next round.
func (lc *Lifecycle) claimOnce(ctx context.Context, action, recID string) (ok bool, release func()) {
	release, err := lc.takeOnce(ctx, action, recID)
	var busy *errOnceBusy
	switch {
	case errors.As(err, &busy):
		return false, func() {}
	case err != nil:
		lc.log.Warn().Err(err).Str("recording", recID).Str("action", action).Msg("Could not take the lease on a recording's action; leaving it to the next round")
		return false, func() {}
	}
	return true, release
}

// onceRound renews the leases on the once-only actions this instance runs (a summary
// that waits for slow uploads runs longer than onceTTL, and must not be done again by
// another instance meanwhile), and deletes the leases on events and on actions that ran
// out (their holders are gone or did not give them back). It runs every third of
// onceTTL; with nothing running here the renewals cost nothing.
func (f *fleet) onceRound(ctx context.Context) {
	lc := f.lc
	for _, res := range lc.once.list() {
		if _, err := lc.db.RenewLease(ctx, res, f.owner, f.onceTTL); err != nil && lc.once.renewing(res) {
			ev := lc.log.Warn()
			if errors.Is(err, storage.ErrLeaseLost) {
				// Not renewed for a whole onceTTL (the database was unreachable) and
				// taken: the other instance may do the action a second time.
				ev = lc.log.Error()
			}
			ev.Err(err).Str("lease", res).Msg("Could not renew the lease on a recording's action while it runs")
		}
	}
	if _, err := lc.db.DeleteExpiredLeases(ctx, storage.EventResource("")); err != nil {
		lc.log.Warn().Err(err).Msg("Could not delete the expired leases on events")
	}
	if _, err := lc.db.DeleteExpiredLeases(ctx, onceLeases); err != nil {
		lc.log.Warn().Err(err).Msg("Could not delete the expired leases on recordings' actions")
	}
}

package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	voippeer "github.com/matrix-recorder/matrix-recorder/call/voip/peer"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/roomerr"
)

// inMsg is one call signalling message addressed to a recording.
type inMsg struct {
	typ       string
	sender    id.UserID
	raw       json.RawMessage
	common    voip.Common
	encrypted bool
	at        time.Time
}

func (m inMsg) device() matrixrtc.DeviceKey {
	return matrixrtc.DeviceKey{User: m.sender, Device: id.DeviceID(m.common.DeviceID)}
}

// participant is a device in the call.
type participant struct {
	dev matrixrtc.Member
	// listed: the device has a valid member entry. An unlisted one called us before its
	// entry reached us (or without one); it stays while its call lasts.
	listed   bool
	joinedAt time.Time
}

// Bounds of per-recording bookkeeping.
const (
	maxEarlyCalls      = 64
	maxEarlyCandidates = voippeer.MaxEarlyCandidates
	endedCallTTL       = 5 * time.Minute
)

// Recording records one room's full-mesh call. Its state is owned by its loop; peers run
// on loops of their own and report back through it.
type Recording struct {
	b          *Backend
	cfg        Config
	roomID     id.RoomID
	confID     string
	memberType string
	session    string
	log        zerolog.Logger
	loop       *call.Loop
	// ctx ends when the recording is over; tracks record under it.
	ctx       context.Context
	cancel    context.CancelFunc
	sess      *recorder.Session
	startedAt time.Time
	silent    *silentSource
	// own is the bot's entry in the call's member event.
	own *matrixrtc.Own

	// owned by the loop
	rs          *roomState
	devices     map[matrixrtc.DeviceKey]*participant
	peers       map[matrixrtc.DeviceKey]*peer
	endedCalls  map[string]time.Time
	earlyCands  map[string][]voip.Candidate
	reorder     *reorder[inMsg]
	joiners     *call.Joiners
	retries     map[matrixrtc.DeviceKey]int
	retryTimers map[matrixrtc.DeviceKey]*time.Timer
	encryptMode map[matrixrtc.DeviceKey]bool
	timers      map[string]*time.Timer
	ending      bool
	lastResync  time.Time
	// warnedForeign and warnedCapped: ignored member events were logged once.
	warnedForeign, warnedCapped bool

	// shared with Status, SetOptOut and the track pumps
	mu        sync.Mutex
	optOut    map[id.UserID]bool
	status    map[matrixrtc.DeviceKey]*call.ParticipantStatus
	pumps     map[*pump]struct{}
	endReason string
	result    recorder.Manifest
	resultErr error
	done      chan struct{}
}

var _ call.Recording = (*Recording)(nil)

func newRecording(ctx context.Context, b *Backend, req call.StartRequest, c Call, rs *roomState) (*Recording, error) {
	sess, err := b.rec.Start(ctx, recorder.CallInfo{CallID: c.ConfID, RoomID: string(req.RoomID), Kind: recorder.KindMesh})
	if err != nil {
		return nil, fmt.Errorf("start recording: %w", err)
	}
	memberType := matrixrtc.TypeCallMember.Type
	if c.EventType == TypeCallStable {
		memberType = matrixrtc.TypeCallMemberStable.Type
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(b.ctx))
	r := &Recording{
		b: b, cfg: b.cfg, roomID: req.RoomID, confID: c.ConfID, memberType: memberType,
		session: randomID(12), ctx: rctx, cancel: cancel, sess: sess, startedAt: sess.StartedAt(),
		rs: rs, devices: map[matrixrtc.DeviceKey]*participant{}, peers: map[matrixrtc.DeviceKey]*peer{},
		endedCalls: map[string]time.Time{}, earlyCands: map[string][]voip.Candidate{},
		reorder: newReorder[inMsg](), retries: map[matrixrtc.DeviceKey]int{},
		retryTimers: map[matrixrtc.DeviceKey]*time.Timer{}, encryptMode: map[matrixrtc.DeviceKey]bool{}, timers: map[string]*time.Timer{},
		optOut: map[id.UserID]bool{}, status: map[matrixrtc.DeviceKey]*call.ParticipantStatus{}, pumps: map[*pump]struct{}{},
		done: make(chan struct{}), lastResync: time.Now(),
	}
	r.joiners = call.NewJoiners(rctx, b.mx, req.RoomID, b.cfg.CommandPrefix, false)
	r.log = b.log.With().Stringer("room_id", req.RoomID).Str("conf_id", c.ConfID).Str("session_id", r.session).Logger()
	r.silent = newSilentSource(r.log)
	r.own = matrixrtc.NewOwn(b.mx, req.RoomID, matrixrtc.OwnSpec{
		Format: matrixrtc.FormatMSC3401, Type: event.Type{Type: memberType, Class: event.StateEventType},
		SlotID: c.ConfID, SessionID: r.session, Feeds: []string{voip.PurposeUserMedia},
		Expiry: b.cfg.MemberTTL, Current: r.currentOwnMember,
	}, r.log)
	for u, at := range req.OptedOut {
		r.optOut[u] = true
		if at.Before(r.startedAt) {
			at = r.startedAt
		}
		sess.SetOptOut(string(u), true, at)
	}
	r.loop = call.NewLoop(context.WithoutCancel(b.ctx))

	// Everyone already in the call joined, as far as this recording goes, when it started;
	// the start notice names them.
	r.noteIgnored()
	r.reconcile(r.startedAt, false)

	b.register(r)
	if err := r.own.Publish(ctx, nil); err != nil {
		r.log.Error().Err(err).Msg("Could not publish the bot's member entry")
		r.loop.Post(func() { r.end("I could not join the call", false) })
		<-r.done
		r.discardIfEmpty()
		return nil, fmt.Errorf("join the call (send %s state): %w", memberType, err)
	}
	go r.own.KeepAlive(r.ctx)
	r.silent.start()
	r.log.Info().Int("devices", len(r.devices)).Str("folder", sess.Folder()).Msg("Recording group call")
	r.loop.Post(func() {
		for _, p := range r.sortedDevices() {
			r.connect(p.dev)
		}
		r.schedule()
	})
	return r, nil
}

// discardIfEmpty removes the folder of a recording that never got a track.
func (r *Recording) discardIfEmpty() {
	m := r.sess.Manifest()
	if len(m.Tracks) == 0 {
		_ = os.RemoveAll(r.sess.Folder())
	}
}

func (r *Recording) post(fn func()) {
	if !r.loop.Post(fn) {
		r.log.Trace().Msg("Recording loop stopped; dropping work")
	}
}

// timer (re)arms a named timer that runs fn on the loop.
func (r *Recording) timer(name string, d time.Duration, fn func()) {
	if t := r.timers[name]; t != nil {
		t.Stop()
	}
	r.timers[name] = time.AfterFunc(d, func() { r.post(fn) })
}

func (r *Recording) stopTimer(name string) {
	if t := r.timers[name]; t != nil {
		t.Stop()
		delete(r.timers, name)
	}
}

// schedule arms the periodic timers: state resync, expiry, the maximum duration.
func (r *Recording) schedule() {
	r.timer("resync", r.cfg.Resync, r.resync)
	if d := r.cfg.MaxDuration; d > 0 {
		r.timer("max", d-time.Since(r.startedAt), func() {
			r.end(fmt.Sprintf("the maximum recording length of %s was reached", d), false)
		})
	}
	r.armExpiry()
	r.checkEmpty()
}

// ownMember returns the bot's member event content as last seen.
func (r *Recording) ownMember() json.RawMessage { return r.rs.own[r.memberType] }

// currentOwnMember reads the bot's member content on the loop.
func (r *Recording) currentOwnMember() json.RawMessage {
	ch := make(chan json.RawMessage, 1)
	if !r.loop.Post(func() { ch <- r.ownMember() }) {
		return nil
	}
	select {
	case raw := <-ch:
		return raw
	case <-time.After(10 * time.Second):
		return nil
	}
}

// resync re-reads the room state from the homeserver.
func (r *Recording) resync() {
	if r.ending {
		return
	}
	r.lastResync = time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		defer cancel()
		rs, err := r.b.readRoom(ctx, r.roomID)
		r.post(func() {
			r.timer("resync", r.cfg.Resync, r.resync)
			if err != nil {
				r.log.Debug().Err(err).Msg("State resync failed")
				return
			}
			if r.ending {
				return
			}
			r.rs = rs
			r.afterState()
		})
	}()
}

// resyncSoon reads the state now unless it was read very recently.
func (r *Recording) resyncSoon() {
	if time.Since(r.lastResync) > 2*time.Second {
		r.resync()
	}
}

// postState folds a state event from sync into the room state.
func (r *Recording) postState(typ, stateKey string, evt *event.Event) {
	r.post(func() {
		if r.ending {
			return
		}
		if !applyEvent(r.rs, typ, stateKey, evt) {
			r.noteIgnored()
			return
		}
		if typ == event.StateMember.Type && id.UserID(stateKey) == r.b.mx.UserID() {
			if _, joined := r.rs.joined[r.b.mx.UserID()]; !joined {
				r.end("I was removed from the room", false)
				return
			}
		}
		r.afterState()
	})
}

func (r *Recording) afterState() {
	r.noteIgnored()
	if c, ok := r.rs.calls[r.confID]; ok && c.Terminated {
		r.end("the call was ended", false)
		return
	}
	r.reconcile(time.Time{}, true)
	r.armExpiry()
	r.checkEmpty()
}

// noteIgnored logs, once per recording, member events the room state refused: keyed by
// another user than their sender, or beyond the room's cap.
func (r *Recording) noteIgnored() {
	if r.rs.foreign > 0 && !r.warnedForeign {
		r.warnedForeign = true
		r.log.Warn().Int("events", r.rs.foreign).Msg("Ignoring call member events whose state key names another user than their sender")
	}
	if r.rs.capped > 0 && !r.warnedCapped {
		r.warnedCapped = true
		r.log.Warn().Int("events", r.rs.capped).Int("max_per_user", matrixrtc.MaxDevicesPerUser).Int("max_per_room", matrixrtc.MaxRoomMemberships).
			Msg("Too many call memberships in the room; ignoring the rest")
	}
}

// reconcile brings the participant set in line with the member entries: joins, leaves,
// new sessions. at is the join time to use (zero: the member event's time); connect says
// whether to place calls now and, as it is false only at the start, to tell the room about
// people who join (the start notice names those there at the start).
func (r *Recording) reconcile(at time.Time, connect bool) {
	now := time.Now()
	valid, _ := r.rs.devices(r.confID, now, r.b.mx.UserID())
	want := make(map[matrixrtc.DeviceKey]matrixrtc.Member, len(valid))
	for _, d := range valid {
		if len(want) >= r.cfg.MaxPeers {
			r.log.Warn().Int("max", r.cfg.MaxPeers).Msg("More devices in the call than this recorder connects to; ignoring the rest")
			break
		}
		want[d.Key()] = d
	}
	for key, p := range r.devices {
		d, ok := want[key]
		switch {
		case !ok && p.listed:
			r.deviceLeft(key, "left the call")
		case !ok:
			// unlisted: stays while its call lasts
		case d.SessionID != p.dev.SessionID:
			r.log.Info().Stringer("device", key).Msg("Device rejoined with a new session")
			r.deviceLeft(key, "rejoined")
		default:
			if !p.listed {
				// Its invite came before its member event: the member event says when it
				// joined, if that is earlier than the invite's arrival.
				if joined := r.memberEventTime(d, now); joined.Before(p.joinedAt) {
					p.joinedAt = joined
					r.sess.AddParticipant(string(d.UserID), string(d.DeviceID), "", joined)
				}
			}
			p.dev, p.listed = d, true
		}
	}
	for _, key := range sortedKeys(want) {
		if r.devices[key] != nil {
			continue
		}
		d := want[key]
		joined := at
		if joined.IsZero() {
			joined = r.memberEventTime(d, now)
		}
		r.deviceJoined(d, true, joined, connect)
		if connect {
			r.connect(d)
		}
	}
}

// memberEventTime is when a device's member event was sent, when that is plausible, else
// now.
func (r *Recording) memberEventTime(d matrixrtc.Member, now time.Time) time.Time {
	if d.CreatedTs == 0 {
		return now
	}
	t := time.UnixMilli(d.CreatedTs)
	if t.After(now) || now.Sub(t) > 30*time.Second || t.Before(r.startedAt) {
		return now
	}
	return t
}

func (r *Recording) deviceJoined(d matrixrtc.Member, listed bool, at time.Time, announce bool) {
	key := d.Key()
	r.devices[key] = &participant{dev: d, listed: listed, joinedAt: at}
	name := r.rs.joined[d.UserID]
	r.sess.AddParticipant(string(d.UserID), string(d.DeviceID), name, at)
	r.mu.Lock()
	r.status[key] = &call.ParticipantStatus{UserID: d.UserID, DeviceID: d.DeviceID, OptedOut: r.optOut[d.UserID]}
	out := r.optOut[d.UserID]
	r.mu.Unlock()
	r.log.Info().Stringer("device", key).Bool("listed", listed).Msg("Participant joined")
	if !announce {
		r.joiners.Seen(d.UserID)
		return
	}
	r.joiners.Joined(d.UserID, "", out)
}

func (r *Recording) deviceLeft(key matrixrtc.DeviceKey, why string) {
	p := r.devices[key]
	if p == nil {
		return
	}
	delete(r.devices, key)
	r.sess.RemoveParticipant(string(key.User), string(key.Device), time.Now())
	if pe := r.peers[key]; pe != nil && (pe.remoteSession == p.dev.SessionID || !p.listed) {
		reason := voip.ReasonUserHangup
		if why == "rejoined" {
			reason = "new_session"
		}
		pe.Hangup(voippeer.End{Reason: reason, Send: true, Why: "the participant " + why})
	}
	if t := r.retryTimers[key]; t != nil {
		t.Stop()
		delete(r.retryTimers, key)
	}
	delete(r.retries, key)
	delete(r.encryptMode, key)
	if r.peers[key] == nil {
		r.reorder.Forget(seqKey(key))
	}
	r.mu.Lock()
	delete(r.status, key)
	r.mu.Unlock()
	r.log.Info().Stringer("device", key).Str("why", why).Msg("Participant left")
}

// seqKey is the prefix of a device's calls in the seq reorder buffer.
func seqKey(key matrixrtc.DeviceKey) string { return string(key.User) + "|" + string(key.Device) + "|" }

// connect places the call to d if this side calls it (who-calls-whom) and no call with its
// current session exists.
func (r *Recording) connect(d matrixrtc.Member) {
	if r.ending || !WeCall(r.b.mx.UserID(), r.b.mx.DeviceID(), d.UserID, d.DeviceID) {
		return
	}
	key := d.Key()
	if pe := r.peers[key]; pe != nil {
		if pe.remoteSession == d.SessionID {
			return
		}
		pe.Hangup(voippeer.End{Reason: "new_session", Send: true, Why: "the participant has a new session"})
		delete(r.peers, key)
	}
	pe := newPeer(r, key, genCallID(), true, d.SessionID, r.sendEncrypted(key))
	pe.screensharing = d.Screensharing()
	r.peers[key] = pe
	pe.call()
}

// sendEncrypted is how to send to a device: as it last sent to us, else the default.
func (r *Recording) sendEncrypted(key matrixrtc.DeviceKey) bool {
	if enc, ok := r.encryptMode[key]; ok {
		return enc
	}
	return !r.cfg.PlainSignalling
}

// armExpiry re-evaluates the call when the next membership expires.
func (r *Recording) armExpiry() {
	next, ok := r.rs.members.NextExpiry(time.Now())
	if !ok {
		r.stopTimer("expiry")
		return
	}
	r.timer("expiry", time.Until(next)+10*time.Millisecond, func() {
		r.reconcile(time.Time{}, true)
		r.armExpiry()
		r.checkEmpty()
	})
}

// checkEmpty ends the recording when nobody has been in the call for EmptyGrace.
func (r *Recording) checkEmpty() {
	if r.ending {
		return
	}
	if len(r.devices) > 0 || len(r.peers) > 0 {
		r.stopTimer("empty")
		return
	}
	if r.timers["empty"] != nil {
		return
	}
	r.timer("empty", r.cfg.EmptyGrace, func() {
		delete(r.timers, "empty")
		if len(r.devices) == 0 && len(r.peers) == 0 {
			r.end("everyone left the call", false)
		}
	})
}

// postSignal queues a signalling message for the loop.
func (r *Recording) postSignal(m inMsg) {
	r.post(func() { r.onSignal(m) })
}

func (r *Recording) onSignal(m inMsg) {
	if r.ending {
		return
	}
	key := m.device()
	if !matrixrtc.ValidASCIIID(string(key.Device)) || !matrixrtc.ValidASCIIID(m.common.CallID) {
		r.log.Debug().Str("type", m.typ).Msg("Dropping call message without a valid device_id or call_id")
		return
	}
	if m.common.ConfID != r.confID {
		r.log.Debug().Str("type", m.typ).Str("their_conf_id", m.common.ConfID).Msg("Dropping call message for another group call")
		return
	}
	// Only call members get state here: a device in the call (listed, or one that called
	// us), or a joined room member's invite (answered as js-sdk does; see onInvite).
	if _, joined := r.rs.joined[m.sender]; !joined {
		r.log.Debug().Str("type", m.typ).Stringer("device", key).Msg("Dropping call message from someone who is not in the room")
		return
	}
	if r.devices[key] == nil && r.peers[key] == nil && m.typ != voip.TypeInvite.Type {
		r.log.Debug().Str("type", m.typ).Stringer("device", key).Msg("Dropping call message from a device that is not in the call")
		return
	}
	r.encryptMode[key] = m.encrypted
	out, dropped := r.reorder.Push(string(m.sender), seqKey(key)+m.common.CallID, m.common.Seq, m, m.at)
	if dropped {
		r.log.Debug().Str("type", m.typ).Stringer("device", key).Msg("Dropping duplicate or out-of-range seq")
	}
	for _, msg := range out {
		r.dispatch(msg)
	}
	if r.reorder.Waiting() && r.timers["seq"] == nil {
		r.timer("seq", seqGapTimeout, r.onSeqTimer)
	}
}

// onSeqTimer releases messages stuck behind a seq that never came.
func (r *Recording) onSeqTimer() {
	delete(r.timers, "seq")
	for _, msg := range r.reorder.Expire(time.Now()) {
		r.log.Warn().Str("type", msg.typ).Stringer("device", msg.device()).Msg("A call message never arrived; going on without it")
		r.dispatch(msg)
	}
	if r.reorder.Waiting() {
		r.timer("seq", seqGapTimeout, r.onSeqTimer)
	}
}

// dispatch handles one message in seq order.
func (r *Recording) dispatch(m inMsg) {
	if r.ending {
		return
	}
	key := m.device()
	callID := m.common.CallID
	pe := r.peers[key]
	if pe != nil && pe.callID != callID {
		pe = nil
	}
	log := r.log.With().Str("type", m.typ).Stringer("device", key).Str("call_id", callID).Logger()
	switch m.typ {
	case voip.TypeInvite.Type:
		r.onInvite(m, log)
	case voip.TypeCandidates.Type:
		cs, err := voip.ParseCandidates(m.raw)
		if err != nil {
			log.Debug().Err(err).Msg("Dropping bad candidates")
			return
		}
		if pe != nil {
			pe.candidates(cs.Candidates, m.encrypted)
			return
		}
		if _, ended := r.endedCalls[callID]; ended {
			return
		}
		if _, ok := r.earlyCands[callID]; !ok && len(r.earlyCands) >= maxEarlyCalls {
			return
		}
		c := append(r.earlyCands[callID], cs.Candidates...)
		if len(c) > maxEarlyCandidates {
			c = c[:maxEarlyCandidates]
		}
		r.earlyCands[callID] = c
	case voip.TypeHangup.Type, voip.TypeReject.Type:
		if pe == nil {
			r.endedCalls[callID] = time.Now()
			return
		}
		pe.receive(m)
	case voip.TypeAnswer.Type, voip.TypeSelectAnswer.Type, voip.TypeNegotiate.Type,
		voip.TypeSDPStreamMetadataChanged.Type, voip.TypeSDPStreamMetadataChangedU.Type:
		if pe == nil {
			log.Debug().Msg("Message for a call that is not running")
			return
		}
		pe.receive(m)
	default:
		log.Debug().Msg("Ignoring call message type")
	}
}

func (r *Recording) onInvite(m inMsg, log zerolog.Logger) {
	inv, err := voip.ParseInvite(m.raw)
	if err != nil {
		log.Warn().Err(err).Msg("Dropping bad invite")
		return
	}
	key := m.device()
	if _, ended := r.endedCalls[inv.CallID]; ended {
		return
	}
	if inv.Invitee != "" && id.UserID(inv.Invitee) != r.b.mx.UserID() {
		return
	}
	if _, joined := r.rs.joined[m.sender]; !joined {
		log.Info().Msg("Ignoring an invite from someone who is not in the room")
		return
	}
	old := r.peers[key]
	if old != nil && old.callID == inv.CallID {
		return
	}
	session := inv.SenderSessionID
	p := r.devices[key]
	if p == nil {
		if len(r.devices) >= r.cfg.MaxPeers {
			log.Warn().Msg("Too many devices; not answering")
			return
		}
		// The member entry has not reached us (or there is none): answer anyway, as
		// js-sdk does, and look at the room state again.
		if session == "" {
			session = "unknown"
		}
		r.deviceJoined(matrixrtc.Member{Format: matrixrtc.FormatMSC3401, UserID: key.User, DeviceID: key.Device, SessionID: session}, false, time.Now(), true)
		r.resyncSoon()
	} else if session == "" {
		session = p.dev.SessionID
	}
	if old != nil {
		// A new call from the same device replaces the old one (js-sdk does the same).
		old.Hangup(voippeer.End{Reason: "replaced", Send: true, Why: "the participant called again"})
	}
	if t := r.retryTimers[key]; t != nil {
		t.Stop()
		delete(r.retryTimers, key)
	}
	pe := newPeer(r, key, inv.CallID, false, session, m.encrypted)
	r.peers[key] = pe
	early := r.earlyCands[inv.CallID]
	delete(r.earlyCands, inv.CallID)
	pe.Answer(inv, early)
	r.stopTimer("empty")
}

// peerEnded is posted by a peer when it is over.
func (r *Recording) peerEnded(pe *peer, info voippeer.End) {
	r.endedCalls[pe.callID] = time.Now()
	for id, t := range r.endedCalls {
		if time.Since(t) > endedCallTTL {
			delete(r.endedCalls, id)
		}
	}
	if r.peers[pe.key] != pe {
		return
	}
	delete(r.peers, pe.key)
	if r.ending {
		return
	}
	p := r.devices[pe.key]
	switch {
	case p == nil:
	case !p.listed:
		// Nothing but the call said it was here.
		r.deviceLeft(pe.key, "hung up")
	case pe.outbound && p.dev.SessionID == pe.remoteSession:
		r.retry(pe.key, info)
	}
	r.checkEmpty()
}

// retry places a failed outgoing call again after a pause, a few times, as js-sdk does.
func (r *Recording) retry(key matrixrtc.DeviceKey, info voippeer.End) {
	r.retries[key]++
	n := r.retries[key]
	if n > r.cfg.MaxRetries {
		id := roomerr.NewID()
		r.log.Warn().Stringer("device", key).Str("why", info.Why).Str("error_id", id).Msg("Giving up calling this device")
		text := fmt.Sprintf("I could not connect to %s (device %s; error %s in the operator's log). Their tracks are not recorded until they rejoin the call.", key.User, key.Device, id)
		go func() {
			ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
			defer cancel()
			r.b.mx.Notice(ctx, r.roomID, text)
		}()
		return
	}
	r.log.Info().Stringer("device", key).Int("attempt", n).Str("why", info.Why).Msg("Calling the device again shortly")
	if t := r.retryTimers[key]; t != nil {
		t.Stop()
	}
	r.retryTimers[key] = time.AfterFunc(r.cfg.RetryDelay, func() {
		r.post(func() {
			delete(r.retryTimers, key)
			if p := r.devices[key]; p != nil && p.listed && r.peers[key] == nil {
				r.connect(p.dev)
			}
		})
	})
}

// peerConnected is posted by a peer once media flows.
func (r *Recording) peerConnected(pe *peer) {
	if r.peers[pe.key] == pe {
		delete(r.retries, pe.key)
	}
}

func (r *Recording) sortedDevices() []*participant {
	keys := make([]matrixrtc.DeviceKey, 0, len(r.devices))
	for k := range r.devices {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Compare(keys[j]) < 0 })
	out := make([]*participant, 0, len(keys))
	for _, k := range keys {
		out = append(out, r.devices[k])
	}
	return out
}

func sortedKeys(m map[matrixrtc.DeviceKey]matrixrtc.Member) []matrixrtc.DeviceKey {
	keys := make([]matrixrtc.DeviceKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Compare(keys[j]) < 0 })
	return keys
}

// end stops the recording (on the loop): hang up every peer, leave the call, finalise (or
// pause, leaving the folder to be resumed).
func (r *Recording) end(reason string, pause bool) {
	if r.ending {
		return
	}
	r.ending = true
	r.mu.Lock()
	r.endReason = reason
	r.mu.Unlock()
	for name := range r.timers {
		r.stopTimer(name)
	}
	for _, t := range r.retryTimers {
		t.Stop()
	}
	peers := make([]*peer, 0, len(r.peers))
	for _, pe := range r.peers {
		peers = append(peers, pe)
	}
	_, inRoom := r.rs.joined[r.b.mx.UserID()]
	r.log.Info().Str("reason", reason).Msg("Ending group recording")
	go r.teardown(peers, inRoom, reason, pause)
}

func (r *Recording) teardown(peers []*peer, inRoom bool, reason string, pause bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.b.ctx), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, pe := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pe.Hangup(voippeer.End{Reason: voip.ReasonUserHangup, Send: true, Why: "the recording ended"})
			select {
			case <-pe.Done():
			case <-time.After(15 * time.Second):
				r.log.Warn().Stringer("device", pe.key).Msg("Peer did not end in time")
			}
		}()
	}
	wg.Wait()
	var errs []error
	if inRoom {
		if err := r.own.Remove(ctx); err != nil {
			r.log.Warn().Err(err).Msg("Could not remove the bot's member entry")
		}
	}
	r.silent.stop()
	m, err := r.sess.End(ctx, pause, reason)
	if err != nil {
		errs = append(errs, err)
	}
	r.cancel()
	r.b.unregister(r)
	r.mu.Lock()
	r.result, r.resultErr = m, errors.Join(errs...)
	r.mu.Unlock()
	r.loop.Stop()
	close(r.done)
	r.log.Info().Str("reason", reason).Int("files", len(m.Tracks)).Msg("Group recording finished")
}

// Status implements call.Recording.
func (r *Recording) Status() call.Status {
	r.mu.Lock()
	ps := make([]call.ParticipantStatus, 0, len(r.status))
	tracks := 0
	for _, s := range r.status {
		st := *s
		st.OptedOut = r.optOut[s.UserID]
		ps = append(ps, st)
		if !st.OptedOut {
			tracks += st.Tracks
		}
	}
	state := r.stateLocked()
	r.mu.Unlock()
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].UserID != ps[j].UserID {
			return ps[i].UserID < ps[j].UserID
		}
		return ps[i].DeviceID < ps[j].DeviceID
	})
	var bytes int64
	for _, t := range r.sess.Manifest().Tracks {
		bytes += t.Bytes
	}
	return call.Status{
		Backend: r.b.Name(), RoomID: r.roomID, StartedAt: r.startedAt, Folder: r.sess.Folder(),
		Participants: ps, Tracks: tracks, Bytes: bytes, State: state,
	}
}

// stateLocked is where the call stands (call.RecordingState): connected while a remote
// track is read, opted-out ones included (the bot is in the call with its owner).
func (r *Recording) stateLocked() call.State {
	return call.RecordingState(r.done, len(r.pumps))
}

// Stop implements call.Recording.
func (r *Recording) Stop(ctx context.Context, reason string) (recorder.Manifest, error) {
	return r.finish(ctx, reason, false)
}

// Pause implements call.Pauser: the bot hangs up and leaves the call as Stop does (the
// next start calls everyone again), and the folder is left to be resumed.
func (r *Recording) Pause(ctx context.Context, reason string) (recorder.Manifest, error) {
	return r.finish(ctx, reason, true)
}

var _ call.Pauser = (*Recording)(nil)

func (r *Recording) finish(ctx context.Context, reason string, pause bool) (recorder.Manifest, error) {
	r.post(func() { r.end(reason, pause) })
	select {
	case <-r.done:
	case <-ctx.Done():
		return r.sess.Manifest(), fmt.Errorf("stop the group recording: %w", ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.result, r.resultErr
}

// SetOptOut implements call.Recording: the user's tracks stop being written at once (their
// current parts are finalised) and start again, as new parts, when they opt back in.
func (r *Recording) SetOptOut(_ context.Context, user id.UserID, out bool) {
	r.mu.Lock()
	if r.optOut[user] == out {
		r.mu.Unlock()
		return
	}
	r.optOut[user] = out
	var ps []*pump
	for p := range r.pumps {
		if p.key.User == user {
			ps = append(ps, p)
		}
	}
	r.mu.Unlock()
	r.sess.SetOptOut(string(user), out, time.Now())
	r.log.Info().Stringer("user_id", user).Bool("opt_out", out).Int("tracks", len(ps)).Msg("Consent changed")
	for _, p := range ps {
		p.consentChanged(out)
	}
}

func (r *Recording) optedOut(user id.UserID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.optOut[user]
}

// Mark implements call.Recording.
func (r *Recording) Mark(user id.UserID, text string, at time.Time) {
	r.sess.AddMarker(string(user), bound(text, 500), at)
}

// Done implements call.Recording.
func (r *Recording) Done() <-chan struct{} { return r.done }

// Result implements call.Recording.
func (r *Recording) Result() (recorder.Manifest, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.result, r.endReason, r.resultErr
}

// trackCount adjusts a device's count of tracks being written.
func (r *Recording) trackCount(key matrixrtc.DeviceKey, delta int) {
	r.mu.Lock()
	if s := r.status[key]; s != nil {
		s.Tracks = max(s.Tracks+delta, 0)
	}
	r.mu.Unlock()
}

// Package onetoone is the call backend of legacy Matrix 1:1 calls (MSC2746 room events):
// it drops the invites that are not for it (in the same sync as their hangup, expired, for
// someone else), rings the bot for the others (Config.OnRing), keeps the candidates that
// come before an invite, and answers with Start, as the LiveKit backend answers a
// MatrixRTC call: the bot decides whether to answer both kinds in the same place, and
// call/rooms runs their recordings like every other. The call itself is the shared MSC2746
// peer of call/voip/peer; a call's recording, state and length limit are 1:1's own.
package onetoone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	voippeer "github.com/matrix-recorder/matrix-recorder/call/voip/peer"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// callEvent is one call event as it arrived in a room (already decrypted).
type callEvent struct {
	RoomID  id.RoomID
	Sender  id.UserID
	EventID id.EventID
	Type    event.Type
	Content json.RawMessage
	// Age is the event's unsigned age when the homeserver sent it (0 if unknown).
	Age time.Duration
	// ReceivedAt is when the bot got it.
	ReceivedAt time.Time
}

// Matrix is what 1:1 calls do on Matrix (a part of call.Matrix): send call events into
// rooms, encrypted in encrypted rooms, and get the TURN/STUN servers for a new call.
type Matrix interface {
	SendMessage(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) (id.EventID, error)
	ICEServers(ctx context.Context) []webrtc.ICEServer
}

var _ Matrix = call.Matrix(nil)

// Config configures the backend.
type Config struct {
	// UserID and DeviceID are the bot's own; the device id is the bot's party_id.
	UserID   id.UserID
	DeviceID id.DeviceID
	// MaxDuration ends a call after this long (0: none).
	MaxDuration time.Duration
	// ICETimeout hangs up a call whose media connection stays lost this long.
	ICETimeout time.Duration
	// MaxTracks bounds tracks per call.
	MaxTracks int
	// GatherWait is how long the answer waits for local candidates, so that most of
	// them travel inside the answer SDP as js-sdk's callee does.
	GatherWait time.Duration
	// CandidateBatch is how long local candidates are collected before they are sent.
	CandidateBatch time.Duration
	// OnRing hears of every invite the bot may answer: it answers with Start and the
	// Answer it got, or refuses with Decline. It runs on a goroutine of its own.
	OnRing func(ctx context.Context, roomID id.RoomID, ans call.Answer)
}

func (c *Config) fill() {
	if c.ICETimeout <= 0 {
		c.ICETimeout = 30 * time.Second
	}
	if c.MaxTracks <= 0 {
		c.MaxTracks = 64
	}
	if c.GatherWait <= 0 {
		c.GatherWait = 200 * time.Millisecond
	}
	if c.CandidateBatch <= 0 {
		c.CandidateBatch = 500 * time.Millisecond
	}
}

// ringGrace is js-sdk's RING_GRACE_PERIOD: an invite older than lifetime minus this is stale.
const ringGrace = 3 * time.Second

// pending candidates for calls whose invite has not been handled yet.
const (
	maxPendingCalls      = 64
	maxRinging           = 64
	maxPendingCandidates = voippeer.MaxEarlyCandidates
	pendingTTL           = 2 * time.Minute
)

type callKey struct {
	room   id.RoomID
	callID string
}

// ringing is an invite the bot was rung for and has not answered or declined yet.
type ringing struct {
	ev  callEvent
	inv *voip.Invite
	log zerolog.Logger
}

type pendingCands struct {
	sender  id.UserID
	partyID string
	cands   []voip.Candidate
	at      time.Time
}

// Backend owns every 1:1 call of the bot.
type Backend struct {
	cfg Config
	mx  Matrix
	rtc *rtc.Factory
	rec *recorder.Recorder
	log zerolog.Logger

	// ctx bounds the lifetime of every call; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	// the call events of the sync response being processed (BeginSync, EndSync)
	batchMu sync.Mutex
	inSync  bool
	batch   []callEvent

	mu      sync.Mutex
	calls   map[callKey]*Call
	ringing map[callKey]*ringing
	queues  map[id.RoomID][]func() // rings waiting behind the one being decided, per room
	pending map[callKey]*pendingCands
	ended   map[callKey]time.Time
	wg      sync.WaitGroup
	closed  bool
}

var (
	_ call.Answerer    = (*Backend)(nil)
	_ call.SyncBatcher = (*Backend)(nil)
)

// New creates the backend.
func New(cfg Config, mx Matrix, f *rtc.Factory, rec *recorder.Recorder, log zerolog.Logger) *Backend {
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	return &Backend{
		cfg: cfg, mx: mx, rtc: f, rec: rec,
		log:     log.With().Str("component", string(recorder.KindOneToOne)).Logger(),
		ctx:     ctx,
		cancel:  cancel,
		calls:   map[callKey]*Call{},
		ringing: map[callKey]*ringing{},
		queues:  map[id.RoomID][]func(){},
		pending: map[callKey]*pendingCands{},
		ended:   map[callKey]time.Time{},
	}
}

// Name is the backend's name in logs and !status.
func (m *Backend) Name() string { return string(recorder.KindOneToOne) }

// Answers says the backend answers legacy 1:1 calls.
func (m *Backend) Answers() recorder.Kind { return recorder.KindOneToOne }

// Probe: a 1:1 call is answered when it rings, never started with !start.
func (m *Backend) Probe(context.Context, id.RoomID, []string) call.Probe { return call.Probe{} }

// answerTimeout bounds Start: the answer is made and the recording started.
const answerTimeout = 30 * time.Second

// Start answers the call that rang (req.Answer, as OnRing gave it) and returns its
// recording once the recording has started, just before the answer goes out. A call that
// ended or failed before is an error: call.ErrNotAnswered when there is nothing to say in
// the room, a usererr.Error saying why otherwise.
func (m *Backend) Start(ctx context.Context, req call.StartRequest) (call.Recording, error) {
	ans := req.Answer
	if ans == nil || ans.KindOf() != recorder.KindOneToOne {
		return nil, errors.New("a 1:1 call is answered when it rings, not started")
	}
	key := callKey{req.RoomID, ans.CallID}
	m.mu.Lock()
	r := m.ringing[key]
	if m.closed || r == nil || r.ev.Sender != ans.Caller {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: the call is over", call.ErrNotAnswered)
	}
	delete(m.ringing, key)
	c := newCall(m, r.ev, r.inv, r.log)
	var early []voip.Candidate
	if p := m.pending[key]; p != nil {
		if p.sender == r.ev.Sender {
			early = p.cands
		}
		delete(m.pending, key)
	}
	m.calls[key] = c
	m.wg.Add(1)
	m.mu.Unlock()
	c.start(early)
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	select {
	case <-c.begun:
	case <-ctx.Done():
		c.hangup("the answer took too long")
		<-c.begun
	}
	if c.recording() {
		return c, nil
	}
	<-c.done
	e := c.end
	if e.Reason == voip.ReasonAnsweredElse || e.Why == "" {
		return nil, fmt.Errorf("%w: %s", call.ErrNotAnswered, e.Reason)
	}
	// The call never got as far as recording: the room hears why.
	return nil, usererr.Error{Msg: e.Why}
}

// Decline refuses a call that rang and was not answered: an m.call.reject (a hangup with
// user_busy for a call of version 0), unless the call is over already.
func (m *Backend) Decline(ctx context.Context, roomID id.RoomID, ans call.Answer) error {
	key := callKey{roomID, ans.CallID}
	m.mu.Lock()
	r := m.ringing[key]
	if r == nil {
		m.mu.Unlock()
		return nil
	}
	delete(m.ringing, key)
	m.ended[key] = time.Now()
	m.mu.Unlock()
	c := voip.Reject{Common: voip.Common{CallID: r.inv.CallID, PartyID: string(m.cfg.DeviceID), Version: voip.V1}}
	var evType = voip.TypeReject
	var content any = c
	if !r.inv.Version.V1 {
		evType = voip.TypeHangup
		content = voip.Hangup{Common: c.Common, Reason: voip.ReasonUserBusy}
	}
	if _, err := m.mx.SendMessage(ctx, roomID, evType, content); err != nil {
		return fmt.Errorf("send %s: %w", evType.Type, err)
	}
	return nil
}

// HangUp sends a hangup for a 1:1 call the bot is no longer in (the last run's), so the
// caller's client stops waiting for a recorder that is gone.
func (m *Backend) HangUp(ctx context.Context, roomID id.RoomID, callID string) error {
	h := voip.Hangup{Common: voip.Common{CallID: callID, PartyID: string(m.cfg.DeviceID), Version: voip.V1}, Reason: voip.ReasonUserHangup}
	_, err := m.mx.SendMessage(ctx, roomID, voip.TypeHangup, h)
	return err
}

// IsCallEvent reports whether t is an event type the manager handles.
func IsCallEvent(t event.Type) bool {
	switch t.Type {
	case voip.TypeInvite.Type, voip.TypeCandidates.Type, voip.TypeAnswer.Type, voip.TypeSelectAnswer.Type,
		voip.TypeReject.Type, voip.TypeNegotiate.Type, voip.TypeHangup.Type,
		voip.TypeSDPStreamMetadataChanged.Type, voip.TypeSDPStreamMetadataChangedU.Type:
		return true
	}
	return false
}

// HandleEvent takes every event the bot sees, as a call.Backend does, and keeps the call
// events of rooms (plain or decrypted). Between BeginSync and EndSync they are collected
// and handled together when the sync response is over, as matrix-js-sdk does (it looks at
// call events only once the whole response is decrypted); others (decrypted later, when a
// late room key came) are handled at once.
func (m *Backend) HandleEvent(ctx context.Context, evt *event.Event) {
	if evt == nil || evt.Mautrix.EventSource&(event.SourceTimeline|event.SourceDecrypted) == 0 {
		return
	}
	if evt.Type == event.StateMember && evt.Mautrix.EventSource&event.SourceTimeline != 0 {
		m.onMember(evt)
		return
	}
	if !IsCallEvent(evt.Type) || evt.RoomID == "" {
		return
	}
	received := evt.Mautrix.ReceivedAt
	if received.IsZero() {
		received = time.Now()
	}
	ev := callEvent{
		RoomID: evt.RoomID, Sender: evt.Sender, EventID: evt.ID, Type: evt.Type,
		Content: evt.Content.VeryRaw, Age: time.Duration(evt.Unsigned.Age) * time.Millisecond,
		ReceivedAt: received,
	}
	m.batchMu.Lock()
	if m.inSync {
		m.batch = append(m.batch, ev)
		m.batchMu.Unlock()
		return
	}
	m.batchMu.Unlock()
	m.handleBatch(ctx, []callEvent{ev})
}

// BeginSync starts collecting call events: a sync response is being processed.
func (m *Backend) BeginSync() {
	m.batchMu.Lock()
	m.inSync = true
	m.batchMu.Unlock()
}

// EndSync handles the call events of the sync response that is over.
func (m *Backend) EndSync(ctx context.Context) {
	m.batchMu.Lock()
	m.inSync = false
	batch := m.batch
	m.batch = nil
	m.batchMu.Unlock()
	if len(batch) > 0 {
		m.handleBatch(ctx, batch)
	}
}

// handleBatch processes the call events of one sync response in order, after the whole
// response was decrypted, as js-sdk does: an invite whose call was already answered or hung
// up in the same batch is dropped.
func (m *Backend) handleBatch(ctx context.Context, evs []callEvent) {
	finished := map[callKey]bool{}
	for _, ev := range evs {
		if ev.Type.Type == voip.TypeAnswer.Type || ev.Type.Type == voip.TypeHangup.Type || ev.Type.Type == voip.TypeReject.Type {
			var c voip.Common
			if json.Unmarshal(ev.Content, &c) == nil && c.CallID != "" {
				finished[callKey{ev.RoomID, c.CallID}] = true
			}
		}
	}
	for _, ev := range evs {
		if ev.Type.Type == voip.TypeInvite.Type {
			var c voip.Common
			if json.Unmarshal(ev.Content, &c) == nil && finished[callKey{ev.RoomID, c.CallID}] {
				m.log.Debug().Str("call_id", c.CallID).Stringer("room_id", ev.RoomID).Msg("Ignoring invite answered or ended in the same sync")
				continue
			}
		}
		m.handle(ctx, ev)
	}
}

// handle processes one call event. It never panics on bad input: invalid events are
// logged and dropped.
func (m *Backend) handle(ctx context.Context, ev callEvent) {
	log := m.log.With().Stringer("room_id", ev.RoomID).Stringer("sender", ev.Sender).Str("type", ev.Type.Type).Stringer("event_id", ev.EventID).Logger()
	if len(ev.Content) > voip.MaxSDPLength+64<<10 {
		log.Warn().Int("bytes", len(ev.Content)).Msg("Dropping oversized call event")
		return
	}
	var err error
	switch ev.Type.Type {
	case voip.TypeInvite.Type:
		err = m.onInvite(ctx, ev, log)
	case voip.TypeCandidates.Type:
		err = m.onCandidates(ev, log)
	case voip.TypeSelectAnswer.Type, voip.TypeNegotiate.Type, voip.TypeHangup.Type, voip.TypeReject.Type,
		voip.TypeSDPStreamMetadataChanged.Type, voip.TypeSDPStreamMetadataChangedU.Type:
		err = m.route(ev, log, func(c *Call, common voip.Common) {
			c.p.Receive(ev.Type.Type, ev.Content, common.PartyID)
		})
	case voip.TypeAnswer.Type:
		err = m.onAnswer(ev, log)
	}
	if err != nil {
		log.Warn().Err(err).Msg("Dropping call event")
	}
}

// route hands an event to the call it belongs to, after checking it comes from that call's
// peer. Our own echoes and events for unknown calls are ignored.
func (m *Backend) route(ev callEvent, log zerolog.Logger, fn func(*Call, voip.Common)) error {
	var common voip.Common
	if err := json.Unmarshal(ev.Content, &common); err != nil {
		return err
	}
	if ev.Sender == m.cfg.UserID && common.PartyID == string(m.cfg.DeviceID) {
		return nil // our own echo
	}
	key := callKey{ev.RoomID, common.CallID}
	m.mu.Lock()
	c := m.calls[key]
	if r := m.ringing[key]; c == nil && r != nil && r.ev.Sender == ev.Sender &&
		(ev.Type.Type == voip.TypeHangup.Type || ev.Type.Type == voip.TypeReject.Type) {
		// Hung up while the bot was deciding: there is nothing left to answer.
		delete(m.ringing, key)
		m.ended[key] = time.Now()
	}
	m.mu.Unlock()
	if c == nil {
		log.Debug().Str("call_id", common.CallID).Msg("Event for a call the bot is not in")
		return nil
	}
	if ev.Sender != c.peer {
		return errors.New("event from someone who is not in this call")
	}
	if c.peerParty != "" && common.PartyID != "" && common.PartyID != c.peerParty {
		return errors.New("event from another device of the caller")
	}
	fn(c, common)
	return nil
}

// onAnswer: the bot never places 1:1 calls, but an answer from another device of the bot's
// own account means that device took the call.
func (m *Backend) onAnswer(ev callEvent, log zerolog.Logger) error {
	if ev.Sender != m.cfg.UserID {
		return nil
	}
	a, err := voip.ParseAnswer(ev.Content)
	if err != nil {
		return err
	}
	if a.PartyID == string(m.cfg.DeviceID) {
		return nil
	}
	key := callKey{ev.RoomID, a.CallID}
	m.mu.Lock()
	c := m.calls[key]
	if _, rung := m.ringing[key]; rung {
		delete(m.ringing, key)
		m.ended[key] = time.Now()
	}
	m.mu.Unlock()
	if c != nil {
		log.Info().Str("call_id", a.CallID).Msg("Call answered by another device of the bot")
		c.p.Hangup(voippeer.End{Reason: voip.ReasonAnsweredElse})
	}
	return nil
}

func (m *Backend) onCandidates(ev callEvent, log zerolog.Logger) error {
	cs, err := voip.ParseCandidates(ev.Content)
	if err != nil {
		return err
	}
	if ev.Sender == m.cfg.UserID && cs.PartyID == string(m.cfg.DeviceID) {
		return nil
	}
	key := callKey{ev.RoomID, cs.CallID}
	m.mu.Lock()
	c := m.calls[key]
	if c == nil {
		if _, ended := m.ended[key]; ended {
			m.mu.Unlock()
			return nil
		}
		// js-sdk sends candidates right after the invite; keep them until it is handled.
		m.gcPendingLocked(time.Now())
		p := m.pending[key]
		if p == nil {
			if len(m.pending) >= maxPendingCalls {
				m.mu.Unlock()
				return errors.New("too many calls with early candidates")
			}
			p = &pendingCands{sender: ev.Sender, partyID: cs.PartyID, at: time.Now()}
			m.pending[key] = p
		}
		if p.sender != ev.Sender {
			m.mu.Unlock()
			return errors.New("early candidates from two senders for one call")
		}
		room := maxPendingCandidates - len(p.cands)
		if room < len(cs.Candidates) {
			log.Warn().Msg("Too many early candidates; dropping the rest")
			cs.Candidates = cs.Candidates[:max(room, 0)]
		}
		p.cands = append(p.cands, cs.Candidates...)
		m.mu.Unlock()
		return nil
	}
	m.mu.Unlock()
	if ev.Sender != c.peer {
		return errors.New("candidates from someone who is not in this call")
	}
	c.p.AddCandidates(cs.Candidates)
	return nil
}

func (m *Backend) gcPendingLocked(now time.Time) {
	for k, p := range m.pending {
		if now.Sub(p.at) > pendingTTL {
			delete(m.pending, k)
		}
	}
	for k, t := range m.ended {
		if now.Sub(t) > pendingTTL {
			delete(m.ended, k)
		}
	}
}

func (m *Backend) onInvite(ctx context.Context, ev callEvent, log zerolog.Logger) error {
	inv, err := voip.ParseInvite(ev.Content)
	if err != nil {
		return err
	}
	log = m.log.With().Stringer("room_id", ev.RoomID).Stringer("peer", ev.Sender).Str("call_id", inv.CallID).Str("party_id", inv.PartyID).Logger()
	if ev.Sender == m.cfg.UserID {
		return nil // an invite of the bot's own account: not for us to answer
	}
	if inv.Invitee != "" && id.UserID(inv.Invitee) != m.cfg.UserID {
		log.Debug().Str("invitee", inv.Invitee).Msg("Invite is for someone else")
		return nil
	}
	// Liveness: the sync age plus the time since we received it, never clocks.
	age := ev.Age + time.Since(ev.ReceivedAt)
	lifetime := time.Duration(inv.Lifetime) * time.Millisecond
	if lifetime == 0 {
		lifetime = 60 * time.Second
	}
	if age > lifetime-ringGrace {
		log.Info().Dur("age", age).Dur("lifetime", lifetime).Msg("Ignoring expired invite")
		return nil
	}
	key := callKey{ev.RoomID, inv.CallID}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	_, dup := m.calls[key]
	_, rung := m.ringing[key]
	_, ended := m.ended[key]
	if dup || rung || ended {
		m.mu.Unlock()
		return nil
	}
	if len(m.ringing) >= maxRinging {
		m.mu.Unlock()
		return errors.New("too many calls ringing at once")
	}
	m.ringing[key] = &ringing{ev: ev, inv: inv, log: log}
	m.wg.Add(1)
	ans := call.Answer{Kind: recorder.KindOneToOne, Caller: ev.Sender, Ring: ev.EventID, CallID: inv.CallID, Replace: true}
	m.ringLocked(ev.RoomID, func() {
		defer m.wg.Done()
		if m.cfg.OnRing != nil {
			m.cfg.OnRing(m.ctx, ev.RoomID, ans)
		}
		m.mu.Lock()
		delete(m.ringing, key) // neither answered nor declined
		m.mu.Unlock()
	})
	m.mu.Unlock()
	return nil
}

// ringLocked rings the bot (ring calls OnRing) off the sync goroutine, as deciding and
// answering take a moment (the caller's candidates meanwhile wait as early candidates),
// one ring of a room after the other: a call that replaces the caller's previous one
// finds that one answered, not half way. Called with m.mu held.
func (m *Backend) ringLocked(room id.RoomID, ring func()) {
	if q, busy := m.queues[room]; busy {
		m.queues[room] = append(q, ring)
		return
	}
	m.queues[room] = nil
	go func() {
		for {
			ring()
			m.mu.Lock()
			q := m.queues[room]
			if len(q) == 0 {
				delete(m.queues, room)
				m.mu.Unlock()
				return
			}
			ring, m.queues[room] = q[0], q[1:]
			m.mu.Unlock()
		}
	}()
}

// onMember ends the calls of a caller who left the room (or was banned): they have hung
// up, even if their client does not say so (matrix-js-sdk as callee does not).
func (m *Backend) onMember(evt *event.Event) {
	var content struct {
		Membership event.Membership `json:"membership"`
	}
	if json.Unmarshal(call.RawContent(evt), &content) != nil || evt.StateKey == nil || evt.RoomID == "" {
		return
	}
	if content.Membership == event.MembershipLeave || content.Membership == event.MembershipBan {
		m.peerLeft(evt.RoomID, id.UserID(*evt.StateKey))
	}
}

// peerLeft ends every call with userID in roomID.
func (m *Backend) peerLeft(roomID id.RoomID, userID id.UserID) {
	m.mu.Lock()
	var cs []*Call
	for k, c := range m.calls {
		if k.room == roomID && c.peer == userID {
			cs = append(cs, c)
		}
	}
	for k, r := range m.ringing {
		if k.room == roomID && r.ev.Sender == userID {
			delete(m.ringing, k)
			m.ended[k] = time.Now()
		}
	}
	m.mu.Unlock()
	for _, c := range cs {
		c.hangup("the caller left the room")
	}
}

// Close hangs up every call still going (call/rooms stopped those it runs first),
// finalises their recordings and waits (bounded by ctx).
func (m *Backend) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	for _, c := range m.active() {
		c.hangup("the recorder is shutting down")
	}
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	defer m.cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.New("calls did not end in time")
	}
}

// active returns the calls being answered or recorded.
func (m *Backend) active() []*Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Values(m.calls))
}

func (m *Backend) forget(c *Call) {
	m.mu.Lock()
	key := callKey{c.roomID, c.callID}
	if m.calls[key] == c {
		delete(m.calls, key)
	}
	m.ended[key] = time.Now()
	m.mu.Unlock()
	m.wg.Done()
}

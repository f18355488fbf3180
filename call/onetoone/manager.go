// Package onetoone records legacy Matrix 1:1 calls (MSC2746 room events): it decides which
// invites to answer (in the same sync as their hangup, expired, for someone else, over a
// limit, refused by the bot's rule), keeps the candidates that come before an invite, and
// records every track the caller sends. The call itself is the shared MSC2746 peer of
// call/voip/peer; a call's recording, state, length limit and notices are 1:1's own.
package onetoone

import (
	"context"
	"encoding/json"
	"errors"
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

// Observer hears about calls; the bot turns this into notices.
type Observer interface {
	CallStarted(ctx context.Context, st Status)
	CallEnded(ctx context.Context, st Status, m recorder.Manifest, err error)
	CallRefused(ctx context.Context, roomID id.RoomID, sender id.UserID, reason string)
}

// Admitter decides whether the bot answers a call from sender in roomID. A non-nil error
// is the reason for refusing, shown to the caller.
type Admitter func(ctx context.Context, roomID id.RoomID, sender id.UserID) error

// Config configures the manager.
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
	// MaxCalls bounds concurrent calls.
	MaxCalls int
	// GatherWait is how long the answer waits for local candidates, so that most of
	// them travel inside the answer SDP as js-sdk's callee does.
	GatherWait time.Duration
	// CandidateBatch is how long local candidates are collected before they are sent.
	CandidateBatch time.Duration
}

func (c *Config) fill() {
	if c.ICETimeout <= 0 {
		c.ICETimeout = 30 * time.Second
	}
	if c.MaxTracks <= 0 {
		c.MaxTracks = 64
	}
	if c.MaxCalls <= 0 {
		c.MaxCalls = 32
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
	maxPendingCandidates = voippeer.MaxEarlyCandidates
	pendingTTL           = 2 * time.Minute
)

type callKey struct {
	room   id.RoomID
	callID string
}

type pendingCands struct {
	sender  id.UserID
	partyID string
	cands   []voip.Candidate
	at      time.Time
}

// Manager owns every 1:1 call of the bot.
type Manager struct {
	cfg   Config
	mx    Matrix
	obs   Observer
	admit Admitter
	rtc   *rtc.Factory
	rec   *recorder.Recorder
	log   zerolog.Logger

	ctx context.Context

	// the call events of the sync response being processed (BeginSync, EndSync)
	batchMu sync.Mutex
	inSync  bool
	batch   []callEvent

	mu      sync.Mutex
	calls   map[callKey]*Call
	pending map[callKey]*pendingCands
	ended   map[callKey]time.Time
	wg      sync.WaitGroup
	closed  bool
}

var _ call.EventHandler = (*Manager)(nil)

// New creates a manager; ctx bounds the lifetime of every call.
func New(ctx context.Context, cfg Config, mx Matrix, obs Observer, admit Admitter, f *rtc.Factory, rec *recorder.Recorder, log zerolog.Logger) *Manager {
	cfg.fill()
	return &Manager{
		cfg: cfg, mx: mx, obs: obs, admit: admit, rtc: f, rec: rec,
		log:     log.With().Str("component", string(recorder.KindOneToOne)).Logger(),
		ctx:     ctx,
		calls:   map[callKey]*Call{},
		pending: map[callKey]*pendingCands{},
		ended:   map[callKey]time.Time{},
	}
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
func (m *Manager) HandleEvent(ctx context.Context, evt *event.Event) {
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
func (m *Manager) BeginSync() {
	m.batchMu.Lock()
	m.inSync = true
	m.batchMu.Unlock()
}

// EndSync handles the call events of the sync response that is over.
func (m *Manager) EndSync(ctx context.Context) {
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
func (m *Manager) handleBatch(ctx context.Context, evs []callEvent) {
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
func (m *Manager) handle(ctx context.Context, ev callEvent) {
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
func (m *Manager) route(ev callEvent, log zerolog.Logger, fn func(*Call, voip.Common)) error {
	var common voip.Common
	if err := json.Unmarshal(ev.Content, &common); err != nil {
		return err
	}
	if ev.Sender == m.cfg.UserID && common.PartyID == string(m.cfg.DeviceID) {
		return nil // our own echo
	}
	m.mu.Lock()
	c := m.calls[callKey{ev.RoomID, common.CallID}]
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
func (m *Manager) onAnswer(ev callEvent, log zerolog.Logger) error {
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
	m.mu.Lock()
	c := m.calls[callKey{ev.RoomID, a.CallID}]
	m.mu.Unlock()
	if c != nil {
		log.Info().Str("call_id", a.CallID).Msg("Call answered by another device of the bot")
		c.p.Hangup(voippeer.End{Reason: voip.ReasonAnsweredElse})
	}
	return nil
}

func (m *Manager) onCandidates(ev callEvent, log zerolog.Logger) error {
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

func (m *Manager) gcPendingLocked(now time.Time) {
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

func (m *Manager) onInvite(ctx context.Context, ev callEvent, log zerolog.Logger) error {
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
	if _, dup := m.calls[key]; dup {
		m.mu.Unlock()
		return nil
	}
	if _, ended := m.ended[key]; ended {
		m.mu.Unlock()
		return nil
	}
	active := len(m.calls)
	var replaced []*Call
	for k, c := range m.calls {
		if k.room == ev.RoomID && c.peer == ev.Sender {
			replaced = append(replaced, c)
		}
	}
	m.mu.Unlock()

	refuse := func(reason string) error {
		log.Info().Str("reason", reason).Msg("Refusing call")
		c := voip.Reject{Common: voip.Common{CallID: inv.CallID, PartyID: string(m.cfg.DeviceID), Version: voip.V1}}
		var evType = voip.TypeReject
		var content any = c
		if !inv.Version.V1 {
			evType = voip.TypeHangup
			content = voip.Hangup{Common: c.Common, Reason: voip.ReasonUserBusy}
		}
		if _, err := m.mx.SendMessage(ctx, ev.RoomID, evType, content); err != nil {
			log.Warn().Err(err).Msg("Failed to send reject")
		}
		m.obs.CallRefused(ctx, ev.RoomID, ev.Sender, reason)
		return nil
	}
	if m.admit != nil {
		if err := m.admit(ctx, ev.RoomID, ev.Sender); errors.Is(err, call.ErrOtherInstance) {
			log.Debug().Msg("Another recorder instance takes this call")
			return nil
		} else if err != nil {
			return refuse(err.Error())
		}
	}
	if active-len(replaced) >= m.cfg.MaxCalls {
		return refuse("the recorder is busy with too many calls")
	}
	// A new call from the same person in the same room replaces the old one (their
	// client has given up on it).
	for _, c := range replaced {
		c.p.Hangup(voippeer.End{Reason: "replaced", Send: true})
	}

	c := newCall(m, ev, inv, log)
	var early []voip.Candidate
	m.mu.Lock()
	if p := m.pending[key]; p != nil {
		if p.sender == ev.Sender {
			early = p.cands
		}
		delete(m.pending, key)
	}
	m.calls[key] = c
	m.wg.Add(1)
	m.mu.Unlock()
	c.start(early)
	return nil
}

// onMember ends the calls of a caller who left the room (or was banned): they have hung
// up, even if their client does not say so (matrix-js-sdk as callee does not).
func (m *Manager) onMember(evt *event.Event) {
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
func (m *Manager) peerLeft(roomID id.RoomID, userID id.UserID) {
	m.mu.Lock()
	var cs []*Call
	for k, c := range m.calls {
		if k.room == roomID && c.peer == userID {
			cs = append(cs, c)
		}
	}
	m.mu.Unlock()
	for _, c := range cs {
		c.hangup("the caller left the room")
	}
}

// HangupRoom ends the calls in a room (a command, or the bot leaving).
func (m *Manager) HangupRoom(roomID id.RoomID, why string) int {
	m.mu.Lock()
	var cs []*Call
	for k, c := range m.calls {
		if k.room == roomID {
			cs = append(cs, c)
		}
	}
	m.mu.Unlock()
	for _, c := range cs {
		c.hangup(why)
	}
	return len(cs)
}

// Active returns the status of every call.
func (m *Manager) Active() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.calls))
	for _, c := range m.calls {
		out = append(out, c.status())
	}
	return out
}

// Shutdown hangs up every call, finalises every recording and waits (bounded by ctx).
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	cs := make([]*Call, 0, len(m.calls))
	for _, c := range m.calls {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	for _, c := range cs {
		c.hangup("the recorder is shutting down")
	}
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.New("calls did not end in time")
	}
}

func (m *Manager) forget(c *Call) {
	m.mu.Lock()
	key := callKey{c.roomID, c.callID}
	if m.calls[key] == c {
		delete(m.calls, key)
	}
	m.ended[key] = time.Now()
	m.mu.Unlock()
	m.wg.Done()
}

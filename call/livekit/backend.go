// Package livekit records Element Call calls as people use them today: MatrixRTC
// memberships in the room name LiveKit foci, the bot joins every SFU the call uses as a
// subscriber with a token from the focus' JWT service, and records every published track.
// In encrypted rooms the media is end-to-end encrypted per participant; the bot publishes
// its own membership so that clients send it their keys (Olm to-device, or the older room
// events), and decrypts every frame before writing (package framecrypt).
package livekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/ctxtime"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/roomerr"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// Options tune the backend; zero values take the defaults.
type Options struct {
	// KeyWait bounds how long frames are held back for a media key that has not arrived
	// (default 4 s; the recorder's timeline tolerates up to 5 s of delay).
	KeyWait time.Duration
	// EndGrace is how long a recording outlives the last other member, and how long an SFU
	// nobody publishes on stays joined (default 30 s).
	EndGrace time.Duration
	// ConnectTimeout bounds how long Start waits for the first SFU connection (default 45 s).
	ConnectTimeout time.Duration
	// Tick is how often a recording re-checks memberships (default 2 s).
	Tick time.Duration
	// HTTPClient talks to JWT services (default: a client with a 20 s timeout).
	HTTPClient *http.Client
	// OnCallBegan, when set, is called (on its own goroutine) when a room's call begins:
	// the first device with a LiveKit focus joins a call nobody was in (also when the bot
	// first sees a call that is already running). It is checked again after a short delay,
	// so a replay of old events does not count.
	OnCallBegan func(ctx context.Context, room id.RoomID)
	// Trust says which JWT services the bot sends its OpenID token to.
	Trust TrustOptions
	// OnRing, when set, is called (on its own goroutine) when a call rings the bot: a
	// ring notification meant for it (or the room), within its lifetime and not declined.
	// The bot answers with Start and a call.Answer naming the ring.
	OnRing func(ctx context.Context, room id.RoomID, ring matrixrtc.Ring)
	// CommandPrefix is how commands start ("!"), for notices.
	CommandPrefix string
}

func (o *Options) fill() {
	if o.KeyWait <= 0 {
		o.KeyWait = 4 * time.Second
	}
	if o.EndGrace <= 0 {
		o.EndGrace = 30 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 45 * time.Second
	}
	if o.Tick <= 0 {
		o.Tick = 2 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: tokenTimeout}
	}
	if o.CommandPrefix == "" {
		o.CommandPrefix = "!"
	}
}

// Backend is the call.Backend for MatrixRTC calls over LiveKit.
type Backend struct {
	mx   call.Matrix
	rec  *recorder.Recorder
	log  zerolog.Logger
	opts Options

	ctx    context.Context
	cancel context.CancelFunc

	// trust decides which foci the bot uses; tokens go to listed services through
	// tokenOpen, to the others through tokenGuarded (public addresses only).
	trust        *focusTrust
	tokenOpen    *http.Client
	tokenGuarded *http.Client

	// stale removes memberships of this device an earlier run left.
	stale *matrixrtc.Stale

	mu       sync.Mutex
	tables   map[id.RoomID]*matrixrtc.Table
	active   map[id.RoomID]*Recording
	starting map[id.RoomID]bool
	// pending holds members' keys for rooms not being recorded (yet); held, keys whose
	// sender is not (yet) a member of the room's call.
	pending *keyQueue
	held    *keyQueue
	// rings are the call notifications (and declines) seen per room, by event id.
	rings map[id.RoomID]map[id.EventID]*ringRec
}

// Bounds of keys kept for rooms that are not being recorded (yet), and of keys whose
// sender's membership has not arrived (to-device messages are handled before the room
// events of the same sync; a key from a non-member that stays one is dropped).
const (
	pendingKeyTTL   = 10 * time.Minute
	pendingPerRoom  = 256
	pendingRoomsMax = 64
	heldKeyTTL      = 30 * time.Second
	heldPerRoom     = 32
	heldRoomsMax    = 32
	// sweepTables: with more rooms than this in the table map, rooms whose memberships
	// all expired are forgotten when a new one comes.
	sweepTables = 64
)

var _ call.Backend = (*Backend)(nil)

// New returns the backend. mx may also implement matrixrtc.DelayedEvents.
func New(mx call.Matrix, rec *recorder.Recorder, opts Options, log zerolog.Logger) *Backend {
	opts.fill()
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{
		mx: mx, rec: rec, opts: opts, log: log.With().Str("backend", "livekit").Logger(),
		ctx: ctx, cancel: cancel,
		trust:     newFocusTrust(opts.Trust, func() string { return mx.UserID().Homeserver() }),
		tokenOpen: tokenClient(opts.HTTPClient, opts.HTTPClient.Transport), tokenGuarded: tokenClient(opts.HTTPClient, guardedTransport(opts.HTTPClient.Transport)),
		tables: map[id.RoomID]*matrixrtc.Table{}, active: map[id.RoomID]*Recording{},
		starting: map[id.RoomID]bool{},
		pending:  newKeyQueue(pendingPerRoom, pendingRoomsMax, pendingKeyTTL),
		held:     newKeyQueue(heldPerRoom, heldRoomsMax, heldKeyTTL),
		rings:    map[id.RoomID]map[id.EventID]*ringRec{},
	}
	b.stale = matrixrtc.NewStale(ctx, mx, b.busy, b.log, matrixrtc.MatrixRTC...)
	return b
}

// busy reports whether a recording of the room (or its start) owns the bot's membership.
func (b *Backend) busy(room id.RoomID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.active[room] != nil || b.starting[room]
}

// Name is "livekit".
func (b *Backend) Name() string { return "livekit" }

func (b *Backend) self() matrixrtc.DeviceKey {
	return matrixrtc.DeviceKey{User: b.mx.UserID(), Device: b.mx.DeviceID()}
}

// members returns the room's current call members other than the bot.
func (b *Backend) members(room id.RoomID, now time.Time) []matrixrtc.Member {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.tables[room]
	if t == nil {
		return nil
	}
	return t.Members(now, b.self())
}

// HandleEvent follows memberships (state, timeline and sticky events) and media keys, and
// forgets a room's call state when the bot leaves the room.
func (b *Backend) HandleEvent(ctx context.Context, evt *event.Event) {
	switch {
	case matrixrtc.IsMemberEvent(evt.Type) && evt.RoomID != "":
		b.handleMember(evt)
	case evt.Type.Type == TypeEncryptionKeys.Type:
		b.handleKeys(evt)
	case matrixrtc.IsRingEvent(evt.Type) && evt.RoomID != "" && evt.StateKey == nil:
		b.handleRing(evt)
	case evt.Type.Type == event.StateMember.Type && evt.RoomID != "" && evt.StateKey != nil && id.UserID(*evt.StateKey) == b.mx.UserID():
		var m struct {
			Membership event.Membership `json:"membership"`
		}
		if json.Unmarshal(call.RawContent(evt), &m) == nil && (m.Membership == event.MembershipLeave || m.Membership == event.MembershipBan) {
			b.forgetRoom(evt.RoomID)
		}
	}
}

// forgetRoom drops what the backend keeps about a room the bot left (a recording there
// ends on its own once its members are gone).
func (b *Backend) forgetRoom(room id.RoomID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.active[room] != nil || b.starting[room] {
		return
	}
	delete(b.tables, room)
	delete(b.rings, room)
	b.pending.drop(room)
	b.held.drop(room)
}

// tableLocked returns the room's membership table, creating it (and, with many rooms,
// forgetting rooms whose memberships all expired) when create is set.
func (b *Backend) tableLocked(room id.RoomID, create bool) *matrixrtc.Table {
	t := b.tables[room]
	if t != nil || !create {
		return t
	}
	if len(b.tables) >= sweepTables {
		now := time.Now()
		for r, other := range b.tables {
			if b.active[r] != nil || b.starting[r] {
				continue
			}
			other.EvictExpired(now)
			if other.Empty() {
				delete(b.tables, r)
			}
		}
	}
	t = matrixrtc.NewTable()
	b.tables[room] = t
	return t
}

// applyLocked folds one membership event into the room's table (the MatrixRTC formats:
// MSC3401 entries are the mesh backend's) and logs what it refused.
func (b *Backend) applyLocked(evt *event.Event, room id.RoomID, now time.Time) matrixrtc.Result {
	u, err := matrixrtc.Parse(evt, call.RawContent(evt), now)
	switch {
	case errors.Is(err, matrixrtc.ErrNotOwner):
		b.log.Warn().Err(err).Stringer("room_id", room).Stringer("sender", evt.Sender).Stringer("event_id", evt.ID).
			Msg("Ignoring a call membership keyed by another user")
	case err != nil && !errors.Is(err, matrixrtc.ErrOtherCall):
		b.log.Debug().Err(err).Stringer("room_id", room).Stringer("sender", evt.Sender).Msg("Ignoring a call membership")
	}
	u = u.Only(matrixrtc.MatrixRTC...)
	if u.Key == "" {
		return matrixrtc.ResultUnchanged
	}
	t := b.tableLocked(room, len(u.Members) > 0)
	if t == nil {
		return matrixrtc.ResultUnchanged
	}
	res := t.Apply(u)
	if t.FirstWarning(res, evt.Sender) {
		b.log.Warn().Stringer("room_id", room).Stringer("sender", evt.Sender).Stringer("cap", res).
			Int("max_per_user", matrixrtc.MaxDevicesPerUser).Int("max_per_room", matrixrtc.MaxRoomMemberships).
			Msg("Too many call memberships; ignoring the rest")
	}
	if t.Empty() && b.active[room] == nil && !b.starting[room] {
		delete(b.tables, room)
	}
	return res
}

func (b *Backend) handleMember(evt *event.Event) {
	self := b.self()
	now := time.Now()
	b.mu.Lock()
	before := 0
	if t := b.tables[evt.RoomID]; t != nil {
		before = len(t.Members(now, self))
	}
	changed := b.applyLocked(evt, evt.RoomID, now) != matrixrtc.ResultUnchanged
	began := false
	var promoted []MediaKey
	if t := b.tables[evt.RoomID]; t != nil {
		began = before == 0 && len(matrixrtc.PublishTransports(t.Members(now, self))) > 0
		// Keys that came before their sender's membership.
		promoted = b.held.take(evt.RoomID, now, func(k MediaKey) bool { return t.Lists(k.Device, now) })
	}
	r := b.active[evt.RoomID]
	if r == nil {
		for _, k := range promoted {
			b.pending.add(k, now)
		}
	}
	b.mu.Unlock()
	if r != nil {
		for _, k := range promoted {
			r.addKey(k)
		}
		if changed {
			r.poke()
		}
	}
	if began && b.opts.OnCallBegan != nil && r == nil {
		room := evt.RoomID
		go func() {
			if ctxtime.Sleep(b.ctx, callBeganDelay) != nil {
				return
			}
			b.mu.Lock()
			busy := b.active[room] != nil || b.starting[room]
			running := b.tables[room] != nil && len(matrixrtc.PublishTransports(b.tables[room].Members(time.Now(), self))) > 0
			b.mu.Unlock()
			if !busy && running {
				b.opts.OnCallBegan(b.ctx, room)
			}
		}()
	}
	// A membership of this device that no recording of this run wrote was left by a run
	// that did not finish (crash, kill).
	b.stale.Seen(evt, call.RawContent(evt))
}

// callBeganDelay is how long after a call seems to begin the bot checks that it still runs
// (a replay of old events in a sync is followed by their leaves).
const callBeganDelay = 3 * time.Second

// handleKeys takes media keys from members of the room's call: for its recording, or kept
// for a while when the room is not being recorded. A key whose sender has no membership is
// held briefly (its membership may be in the same sync, handled after to-device
// messages) and dropped when none comes.
func (b *Backend) handleKeys(evt *event.Event) {
	keys, err := ParseKeyEvent(evt, call.RawContent(evt))
	if err != nil {
		b.log.Warn().Err(err).Stringer("sender", evt.Sender).Msg("Ignoring media keys")
	}
	self := b.self()
	now := time.Now()
	for _, k := range keys {
		if k.Device == self {
			continue
		}
		b.mu.Lock()
		t := b.tables[k.RoomID]
		member := t != nil && t.Lists(k.Device, now)
		r := b.active[k.RoomID]
		kept := false
		switch {
		case !member:
			kept = b.held.add(k, now)
		case r == nil:
			kept = b.pending.add(k, now)
		}
		b.mu.Unlock()
		log := b.log.Debug().Stringer("room_id", k.RoomID).Stringer("user_id", k.Device.User).Stringer("device_id", k.Device.Device)
		switch {
		case !member && kept:
			log.Msg("Media key from a device that is not a member of the room's call; held until its membership arrives")
		case !member:
			log.Msg("Media key from a device that is not a member of the room's call; dropped")
		case r != nil:
			r.addKey(k)
		case kept:
			log.Msg("Media key for a room not being recorded; kept for a while")
		}
	}
}

// loadState reads the room's membership state events from the homeserver into the table
// and returns the room version.
func (b *Backend) loadState(ctx context.Context, room id.RoomID) (string, error) {
	st, err := b.mx.State(ctx, room)
	if err != nil {
		return "", err
	}
	version := "1"
	if c := st[event.StateCreate][""]; c != nil {
		if v, ok := c.Content.Raw["room_version"].(string); ok && v != "" {
			version = v
		}
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, typ := range []event.Type{matrixrtc.TypeCallMember, matrixrtc.TypeCallMemberStable} {
		for _, evt := range st[typ] {
			if evt == nil {
				continue
			}
			evt.RoomID = room
			b.applyLocked(evt, room, now)
		}
	}
	return version, nil
}

// Probe finds Element Call members with a LiveKit focus in the room.
func (b *Backend) Probe(ctx context.Context, room id.RoomID, _ []string) call.Probe {
	if _, err := b.loadState(ctx, room); err != nil {
		return call.Probe{Reason: "I could not read the room's call state: " + roomerr.Clause(b.log.With().Stringer("room_id", room).Logger(), err, "Could not read the room's call state") + "."}
	}
	members := b.members(room, time.Now())
	if len(members) == 0 {
		return call.Probe{Reason: "Nobody is in an Element Call call here."}
	}
	ts := matrixrtc.PublishTransports(members)
	if len(ts) == 0 {
		return call.Probe{Reason: fmt.Sprintf("%d device(s) are in an Element Call call here, but none names a LiveKit focus.", len(members))}
	}
	return call.Probe{OK: true, Priority: 100, Reason: fmt.Sprintf("Element Call with %d device(s) on %d LiveKit focus(es)", len(members), len(ts))}
}

// Start records the room's call: it publishes the bot's membership, joins every focus the
// members publish on, and records every track. It returns once at least one SFU is joined.
func (b *Backend) Start(ctx context.Context, req call.StartRequest) (call.Recording, error) {
	end, ok := call.BeginStart(&b.mu, b.starting, req.RoomID, func() bool { return b.active[req.RoomID] != nil })
	if !ok {
		return nil, errors.New("this room's call is already being recorded")
	}
	defer end()

	version, err := b.loadState(ctx, req.RoomID)
	if err != nil {
		return nil, fmt.Errorf("read the room's call state: %w", err)
	}
	if ans := req.Answer; ans != nil {
		// A direct call: its ring must still stand, and the caller be in the call.
		if err := b.answerable(req.RoomID, ans, time.Now()); err != nil {
			return nil, err
		}
		if err := b.waitCaller(ctx, req.RoomID, ans.Caller); err != nil {
			return nil, err
		}
		if err := b.answerable(req.RoomID, ans, time.Now()); err != nil {
			return nil, err
		}
	}
	members := b.members(req.RoomID, time.Now())
	transports := matrixrtc.PublishTransports(members)
	if len(transports) == 0 {
		return nil, errors.New("nobody in this room's Element Call call names a LiveKit focus")
	}
	trusted, verdicts := b.vetNow(ctx, transports)
	if len(trusted) == 0 {
		b.log.Warn().Stringer("room_id", req.RoomID).Str("refused", refusalText(transports, verdicts)).Msg("No LiveKit focus of the call is trusted; not recording")
		return nil, usererr.Error{Msg: fmt.Sprintf("I cannot record this call: I do not use the LiveKit service it runs on (%s). An operator who trusts a service can list it in %s.",
			refusalText(transports, verdicts), TrustedServicesKey)}
	}
	sess, err := b.rec.Start(ctx, recorder.CallInfo{CallID: "element-call", RoomID: string(req.RoomID), Kind: kindOf(req)})
	if err != nil {
		return nil, fmt.Errorf("create the call folder: %w", err)
	}
	rctx, cancel := context.WithCancel(b.ctx)
	log := b.log.With().Stringer("room_id", req.RoomID).Logger()
	r := &Recording{
		b: b, room: req.RoomID, log: log, sess: sess, keys: newKeyStore(),
		encrypted: b.mx.IsEncrypted(ctx, req.RoomID),
		ctx:       rctx, cancel: cancel, wake: make(chan struct{}, 1),
		conns: map[string]*connection{}, tracks: map[*trackRec]struct{}{}, optOut: map[id.UserID]bool{},
		present: matrixrtc.NewPresence(), names: map[id.UserID]string{}, noKeyTold: map[matrixrtc.DeviceKey]bool{},
		undecrypt: map[matrixrtc.DeviceKey]uint64{},
		foci:      verdicts, retired: map[string]focusRetire{},
		stopped: make(chan struct{}), done: make(chan struct{}),
		joiners: call.NewJoiners(rctx, b.mx, req.RoomID, b.opts.CommandPrefix, false),
	}
	if ans := req.Answer; ans != nil {
		r.caller, r.answerIntent = ans.Caller, ans.Intent
		log.Info().Stringer("caller", ans.Caller).Stringer("ring", ans.Ring).Str("intent", ans.Intent).Msg("Answering a direct call")
	}
	// The bot's membership in the call's own format, so that clients which read only that
	// format list it and send it their keys: sticky when the members' are (a state event
	// where the homeserver lacks sticky events).
	r.own = matrixrtc.NewOwn(b.mx, req.RoomID, matrixrtc.OwnSpec{Format: ownFormat(members), RoomVersion: version}, log)
	for u, since := range req.OptedOut {
		r.optOut[u] = true
		sess.SetOptOut(string(u), true, since)
	}
	if names, err := b.mx.JoinedMembers(ctx, req.RoomID); err == nil {
		for u, n := range names {
			r.names[u] = n
		}
	}

	// Register first: keys sent in answer to the membership must find the recording.
	b.mu.Lock()
	b.active[req.RoomID] = r
	pend := b.pending.take(req.RoomID, time.Now(), nil)
	b.mu.Unlock()
	for _, k := range pend {
		r.addKey(k)
	}
	for url, v := range verdicts {
		if v.err != nil {
			r.refused(url, v)
		}
	}

	fail := func(err error) (call.Recording, error) {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer ccancel()
		_, _ = r.Stop(cctx, "could not start: "+err.Error())
		return nil, err
	}
	if err := r.own.Publish(ctx, trusted[:1]); err != nil {
		if r.encrypted {
			return fail(fmt.Errorf("%w. In an encrypted room I need a call membership to receive the participants' media keys; allow me to send %s state events", err, matrixrtc.TypeCallMember.Type))
		}
		log.Warn().Err(err).Msg("Recording without a call membership; clients will not list the bot")
	} else {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.own.KeepAlive(rctx)
		}()
	}

	r.wg.Add(1)
	go r.supervise()
	if err := r.waitConnected(ctx); err != nil {
		return fail(err)
	}
	log.Info().Int("foci", len(trusted)).Int("members", len(members)).Bool("encrypted", r.encrypted).Msg("Recording the call")
	return r, nil
}

// waitConnected waits until one of the recording's SFU connections joined its room.
func (r *Recording) waitConnected(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.b.opts.ConnectTimeout)
	defer cancel()
	for {
		r.mu.Lock()
		conns := r.connsLocked()
		r.mu.Unlock()
		for _, c := range conns {
			select {
			case <-c.connected:
				return nil
			default:
			}
		}
		select {
		case <-ctx.Done():
			var errs []string
			for _, c := range conns {
				if err := c.err(); err != nil {
					errs = append(errs, err.Error())
				}
			}
			if len(errs) == 0 {
				errs = append(errs, "no answer in time")
			}
			return fmt.Errorf("I could not join the call's media server (LiveKit): %s", strings.Join(errs, "; "))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ownFormat is the format of the bot's membership in a call: sticky when any member's is,
// else a session state event.
func ownFormat(members []matrixrtc.Member) matrixrtc.Format {
	for _, m := range members {
		if m.Format == matrixrtc.FormatSticky {
			return matrixrtc.FormatSticky
		}
	}
	return matrixrtc.FormatSession
}

// ownIdentity is the bot's membership as far as its LiveKit token goes.
type ownIdentity interface {
	Format() matrixrtc.Format
	MemberID() string
	Identity() string
}

// access gets an OpenID token and exchanges it at the focus' JWT service, if the bot
// trusts it (see TrustOptions). A service the operator does not list is reached on public
// addresses only, and the SFU it names must be one too. The token is asked for the way
// that gives the LiveKit identity own's membership implies (clients pair members with
// participants by it): /sfu/get for a state-event membership ("@bot:server:DEVICE"),
// /get_token with the member id for a sticky one (the hashed identity).
func (b *Backend) access(ctx context.Context, room id.RoomID, t matrixrtc.Transport, own ownIdentity) (Access, error) {
	if err := b.trust.check(ctx, t.ServiceURL, t.Owner); err != nil {
		return Access{}, err
	}
	hc := b.tokenGuarded
	if b.trust.isListed(t.ServiceURL) {
		hc = b.tokenOpen
	}
	tok, err := b.mx.OpenIDToken(ctx)
	if err != nil {
		return Access{}, err
	}
	self := b.self()
	acc, err := fetchAccess(ctx, hc, tokenRequest{
		ServiceURL: t.ServiceURL, RoomID: room, UserID: self.User, DeviceID: self.Device,
		MemberID: own.MemberID(), OpenID: tok, Legacy: own.Format() != matrixrtc.FormatSticky,
	})
	if err != nil {
		return Access{}, err
	}
	if want := own.Identity(); acc.Identity != "" && acc.Identity != want {
		b.log.Warn().Stringer("room_id", room).Str("focus", t.ServiceURL).Str("identity", acc.Identity).Str("membership_identity", want).
			Str("endpoint", acc.Endpoint).Msg("The JWT service gave the bot another LiveKit identity than its membership implies; clients may not pair them")
	}
	if err := b.trust.checkSFU(ctx, t.ServiceURL, acc.URL); err != nil {
		return Access{}, fmt.Errorf("%w: %w", ErrUntrustedFocus, err)
	}
	return acc, nil
}

// finished forgets a recording that stopped, and the room's memberships that expired (a
// call that is over leaves nothing behind).
func (b *Backend) finished(r *Recording) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.active[r.room] == r {
		delete(b.active, r.room)
	}
	if t := b.tables[r.room]; t != nil && b.active[r.room] == nil && !b.starting[r.room] {
		t.EvictExpired(time.Now())
		if t.Empty() {
			delete(b.tables, r.room)
		}
	}
}

// Close stops the backend's background work (recordings are stopped by the bot first).
func (b *Backend) Close(ctx context.Context) error {
	b.cancel()
	return nil
}

// kindOf is the kind of call a recording is: a direct call the bot answered is a 1:1 call
// (its limits, its notices, its metrics), not a group recording.
func kindOf(req call.StartRequest) recorder.Kind {
	if req.Answer != nil {
		return recorder.KindDirect
	}
	return recorder.KindLiveKit
}

// Package mesh records Element Call group calls of the full-mesh era (MSC3401, matrix-js-sdk
// GroupCall, Element Call up to 0.3): the bot publishes its own member entry in the room,
// connects to every participant device with one peer connection each (signalling travels
// as to-device messages, Olm-encrypted or plain), and records every track of every device
// into one call folder.
package mesh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Priority is the mesh backend's probe priority: low, so that a MatrixRTC/LiveKit backend
// wins when a room has both kinds of call state.
const Priority = 10

// Config tunes the backend. Zero values mean the defaults.
type Config struct {
	// CommandPrefix is the bot's command prefix, for notices ("!skipme").
	CommandPrefix string
	// MaxDuration ends a recording after this long (0: no limit).
	MaxDuration time.Duration
	// ICETimeout ends a peer connection that stays disconnected this long.
	ICETimeout time.Duration
	// MemberTTL is the lifetime announced in the bot's member entry (js-sdk: 1 h); the
	// entry is rewritten after three quarters of it.
	MemberTTL time.Duration
	// EmptyGrace: when no participant is left, the recording ends after this long, so a
	// participant who reloads the page does not split the call into two folders.
	EmptyGrace time.Duration
	// Resync re-reads the room state this often, healing missed sync events.
	Resync time.Duration
	// PlainSignalling sends call signalling unencrypted to devices that have not shown
	// which they use; by default it is Olm-encrypted as matrix-js-sdk does.
	PlainSignalling bool
	// MaxPeers bounds the peer connections of one recording.
	MaxPeers int
	// RetryDelay is the pause before an outgoing call that failed is placed again
	// (js-sdk's retry loop runs every 5 s, up to 3 times).
	RetryDelay time.Duration
	MaxRetries int
}

func (c *Config) fill() {
	if c.CommandPrefix == "" {
		c.CommandPrefix = "!"
	}
	if c.ICETimeout <= 0 {
		c.ICETimeout = 30 * time.Second
	}
	if c.MemberTTL <= 0 {
		c.MemberTTL = time.Hour
	}
	if c.EmptyGrace <= 0 {
		c.EmptyGrace = 15 * time.Second
	}
	if c.Resync <= 0 {
		c.Resync = time.Minute
	}
	if c.MaxPeers <= 0 {
		c.MaxPeers = 32
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = 5 * time.Second
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = 3
	}
}

// Backend is the full-mesh group call backend.
type Backend struct {
	cfg Config
	mx  call.Matrix
	rtc *rtc.Factory
	rec *recorder.Recorder
	log zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	// stale removes the bot's entries an earlier run left.
	stale *matrixrtc.Stale

	mu        sync.Mutex
	byRoom    map[id.RoomID]*Recording
	bySession map[string]*Recording
	starting  map[id.RoomID]bool
	wg        sync.WaitGroup
}

var _ call.Backend = (*Backend)(nil)

// New creates the backend.
func New(cfg Config, mx call.Matrix, f *rtc.Factory, rec *recorder.Recorder, log zerolog.Logger) *Backend {
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{
		cfg: cfg, mx: mx, rtc: f, rec: rec,
		log: log.With().Str("component", "mesh").Logger(),
		ctx: ctx, cancel: cancel,
		byRoom: map[id.RoomID]*Recording{}, bySession: map[string]*Recording{},
		starting: map[id.RoomID]bool{},
	}
	b.stale = matrixrtc.NewStale(ctx, mx, b.busy, b.log, matrixrtc.FormatMSC3401)
	return b
}

// busy reports whether a recording of the room (or its start) owns the bot's entry there.
func (b *Backend) busy(room id.RoomID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.starting[room] || b.byRoom[room] != nil
}

// Name implements call.Backend.
func (b *Backend) Name() string { return "mesh" }

// readRoom fetches the room's state and folds the call-related part of it.
func (b *Backend) readRoom(ctx context.Context, roomID id.RoomID) (*roomState, error) {
	st, err := b.mx.State(ctx, roomID)
	if err != nil {
		return nil, err
	}
	rs := newRoomState(b.mx.UserID())
	for t, evs := range st {
		for key, evt := range evs {
			if evt == nil {
				continue
			}
			applyEvent(rs, t.Type, key, evt)
		}
	}
	return rs, nil
}

func applyEvent(rs *roomState, typ, stateKey string, evt *event.Event) bool {
	var membership event.Membership
	var name string
	if typ == event.StateMember.Type {
		var m struct {
			Membership  event.Membership `json:"membership"`
			DisplayName string           `json:"displayname"`
		}
		if json.Unmarshal(call.RawContent(evt), &m) != nil {
			return false
		}
		membership, name = m.Membership, m.DisplayName
	} else if !IsCallType(typ) && !matrixrtc.IsMemberState(typ) {
		return false
	}
	return rs.apply(typ, stateKey, evt.Sender, call.RawContent(evt), evt.Timestamp, membership, name)
}

// Probe implements call.Backend: an active MSC3401 call with at least one full-mesh
// participant device.
func (b *Backend) Probe(ctx context.Context, roomID id.RoomID, _ []string) call.Probe {
	rs, err := b.readRoom(ctx, roomID)
	if err != nil {
		b.log.Warn().Err(err).Stringer("room_id", roomID).Msg("Probe could not read the room state")
		return call.Probe{Reason: "I could not read this room's state."}
	}
	c, why := rs.activeCall()
	if why != "" {
		return call.Probe{Reason: why}
	}
	devs, sfu := rs.devices(c.ConfID, time.Now(), b.mx.UserID())
	if len(devs) == 0 {
		if sfu > 0 {
			return call.Probe{Reason: "The group call in this room uses a LiveKit server, not peer-to-peer."}
		}
		return call.Probe{Reason: "Nobody has joined the group call in this room yet; start recording once someone is in it."}
	}
	return call.Probe{OK: true, Priority: Priority, Reason: fmt.Sprintf("full-mesh group call %s with %d device(s)", c.ConfID, len(devs))}
}

// Start implements call.Backend.
func (b *Backend) Start(ctx context.Context, req call.StartRequest) (call.Recording, error) {
	end, ok := call.BeginStart(&b.mu, b.starting, req.RoomID, func() bool { return b.byRoom[req.RoomID] != nil })
	if !ok {
		return nil, errors.New("this room is already being recorded")
	}
	defer end()

	rs, err := b.readRoom(ctx, req.RoomID)
	if err != nil {
		return nil, fmt.Errorf("read the room state: %w", err)
	}
	c, why := rs.activeCall()
	if why != "" {
		return nil, fmt.Errorf("%w: %s", ErrNoCall, why)
	}
	r, err := newRecording(ctx, b, req, c, rs)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// register makes a recording reachable by HandleEvent.
func (b *Backend) register(r *Recording) {
	b.mu.Lock()
	b.byRoom[r.roomID] = r
	b.bySession[r.session] = r
	b.wg.Add(1)
	b.mu.Unlock()
}

func (b *Backend) unregister(r *Recording) {
	b.mu.Lock()
	if b.byRoom[r.roomID] == r {
		delete(b.byRoom, r.roomID)
	}
	if b.bySession[r.session] == r {
		delete(b.bySession, r.session)
	}
	b.mu.Unlock()
	b.wg.Done()
}

// HandleEvent implements call.Backend: room state goes to the room's recording, call
// signalling to the recording whose session it is addressed to.
func (b *Backend) HandleEvent(_ context.Context, evt *event.Event) {
	if evt == nil {
		return
	}
	if evt.Mautrix.EventSource&event.SourceToDevice != 0 {
		b.handleToDevice(evt)
		return
	}
	if evt.RoomID == "" || evt.StateKey == nil {
		return
	}
	typ := evt.Type.Type
	if !IsCallType(typ) && !matrixrtc.IsMemberState(typ) && typ != event.StateMember.Type {
		return
	}
	b.mu.Lock()
	r := b.byRoom[evt.RoomID]
	b.mu.Unlock()
	if r != nil {
		r.postState(typ, *evt.StateKey, evt)
		return
	}
	if matrixrtc.IsMemberState(typ) {
		b.stale.Seen(evt, call.RawContent(evt))
	}
}

// maxToDeviceContent bounds one signalling message (an SDP of voip.MaxSDPLength plus fields).
const maxToDeviceContent = voip.MaxSDPLength + 64<<10

func (b *Backend) handleToDevice(evt *event.Event) {
	typ := evt.Type.Type
	if !strings.HasPrefix(typ, "m.call.") && !strings.HasPrefix(typ, "org.matrix.call.") {
		return
	}
	raw := call.RawContent(evt)
	log := b.log.With().Str("type", typ).Stringer("sender", evt.Sender).Logger()
	if len(raw) > maxToDeviceContent {
		log.Warn().Int("bytes", len(raw)).Msg("Dropping oversized call message")
		return
	}
	var c voip.Common
	if err := json.Unmarshal(raw, &c); err != nil {
		log.Debug().Err(err).Msg("Dropping unparseable call message")
		return
	}
	if c.ConfID == "" {
		return // a 1:1 call message; not ours
	}
	b.mu.Lock()
	r := b.bySession[c.DestSessionID]
	b.mu.Unlock()
	if r == nil {
		log.Debug().Str("conf_id", c.ConfID).Msg("Call message for no session of ours")
		return
	}
	if evt.Sender == b.mx.UserID() && id.DeviceID(c.DeviceID) == b.mx.DeviceID() {
		return // our own
	}
	encrypted := evt.Mautrix.EventSource&event.SourceDecrypted != 0
	if encrypted && evt.Mautrix.TrustSource != nil && evt.Mautrix.TrustSource.DeviceID != "" &&
		evt.Mautrix.TrustSource.DeviceID != id.DeviceID(c.DeviceID) {
		log.Warn().Str("claimed_device", c.DeviceID).Stringer("olm_device", evt.Mautrix.TrustSource.DeviceID).Msg("Dropping call message whose device_id is not the Olm sender's")
		return
	}
	r.postSignal(inMsg{
		typ: typ, sender: evt.Sender, raw: raw, common: c, encrypted: encrypted, at: time.Now(),
	})
}

// Close implements call.Backend. Recordings are stopped by the bot before.
func (b *Backend) Close(ctx context.Context) error {
	b.cancel()
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		b.stale.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.New("mesh recordings did not end in time")
	}
}

// randomID returns n random bytes, hex encoded.
func randomID(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

// newUUID returns a random (version 4) UUID, as js-sdk puts in org.matrix.msgid.
func newUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// genCallID makes a call id as js-sdk does: the time in ms and 16 random characters.
func genCallID() string {
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	buf := make([]byte, 16)
	_, _ = rand.Read(buf)
	for i := range buf {
		buf[i] = letters[int(buf[i])%len(letters)]
	}
	return fmt.Sprintf("%d%s", time.Now().UnixMilli(), buf)
}

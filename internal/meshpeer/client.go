// Package meshpeer is a synthetic Element Call participant of the full-mesh era that behaves
// like matrix-js-sdk's GroupCall on the wire (protocols.md §2): its own member state entry
// with a session id and an expiry, who-calls-whom by user and device id, to-device
// signalling with conf_id, device_id, party_id, sender/dest session ids, seq and
// org.matrix.msgid, Olm-encrypted by default or plain, call events handled after each sync
// with js-sdk's seq reordering, an invite without a stream of the caller refused as js-sdk
// refuses it, screenshares through m.call.negotiate, and a page reload as a new session.
// Media is real (pion, internal/testmedia). Integration tests use it against the real
// homeserver and the bot.
package meshpeer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/internal/testclient"
)

// State event types (the unstable names js-sdk sends).
const (
	TypeCall   = "org.matrix.msc3401.call"
	TypeMember = "org.matrix.msc3401.call.member"
)

// Options configure a Client.
type Options struct {
	Homeserver  string
	UserID      string
	AccessToken string
	DeviceID    string
	// DataDir holds the crypto store.
	DataDir string
	Logger  zerolog.Logger
	// Plain sends call signalling unencrypted (js-sdk's useE2eForGroupCall = false). It
	// still decrypts what it receives, as js-sdk does.
	Plain bool
}

// Client is one participant account, syncing.
type Client struct {
	cli    *mautrix.Client
	crypto *cryptohelper.CryptoHelper
	mc     *testclient.Client
	testclient.Chat
	log   zerolog.Logger
	plain bool

	mu         sync.Mutex
	rooms      map[id.RoomID]*roomView
	changed    chan struct{}
	group      *Group
	received   []Received
	violations []string
}

// roomView is what the client knows of a room.
type roomView struct {
	joined  map[id.UserID]bool
	members map[id.UserID]json.RawMessage
}

// Notice is a message seen in a room.
type Notice = testclient.Message

// Received is a call signalling message the client received.
type Received struct {
	Sender    id.UserID
	Type      string
	Encrypted bool
	Content   json.RawMessage
	At        time.Time
}

// New logs the participant in with its access token, sets up Olm and starts syncing.
func New(ctx context.Context, o Options) (*Client, error) {
	base := testclient.NewSyncer()
	c := &Client{
		log: o.Logger.With().Str("participant", o.UserID).Logger(), plain: o.Plain,
		rooms: map[id.RoomID]*roomView{}, changed: make(chan struct{}),
	}
	mc, err := testclient.New(ctx, testclient.Options{
		Homeserver: o.Homeserver, UserID: o.UserID, AccessToken: o.AccessToken, DeviceID: o.DeviceID,
		DataDir: o.DataDir, Kind: "meshpeer", Logger: o.Logger,
	}, &syncer{DefaultSyncer: base, c: c})
	if err != nil {
		return nil, err
	}
	c.cli, c.crypto, c.mc, c.Chat = mc.Matrix, mc.Crypto, mc, testclient.NewChat(mc.Matrix)
	base.OnEvent(c.onEvent)
	mc.Start(ctx)
	return c, nil
}

// Close leaves any call without signalling and stops syncing.
func (c *Client) Close() error {
	c.mu.Lock()
	g := c.group
	c.mu.Unlock()
	if g != nil {
		g.stop(context.Background(), false)
	}
	return c.mc.Close()
}

// Matrix exposes the mautrix client.
func (c *Client) Matrix() *mautrix.Client { return c.cli }

// UserID is the participant's user id.
func (c *Client) UserID() id.UserID { return c.cli.UserID }

// DeviceID is the participant's device id.
func (c *Client) DeviceID() id.DeviceID { return c.cli.DeviceID }

// syncer handles call events the way js-sdk's CallEventHandler does: to-device call events
// (decrypted first) are collected and processed after the rest of the sync.
type syncer struct {
	*mautrix.DefaultSyncer
	c *Client
}

func (s *syncer) ProcessResponse(ctx context.Context, res *mautrix.RespSync, since string) error {
	calls := s.c.takeCallEvents(ctx, res, since)
	err := s.DefaultSyncer.ProcessResponse(ctx, res, since)
	s.c.notify()
	s.c.mu.Lock()
	g := s.c.group
	s.c.mu.Unlock()
	if g != nil {
		g.onSync(calls)
	}
	return err
}

// takeCallEvents removes the call signalling from a sync response, decrypting Olm messages
// itself (mautrix would drop decrypted types it does not know).
func (c *Client) takeCallEvents(ctx context.Context, res *mautrix.RespSync, since string) []Received {
	mach := c.crypto.Machine()
	mach.HandleDeviceLists(ctx, &res.DeviceLists, since)
	res.DeviceLists = mautrix.DeviceLists{}
	kept := res.ToDevice.Events[:0]
	var out []Received
	for _, evt := range res.ToDevice.Events {
		switch {
		case evt.Type.Type == event.ToDeviceEncrypted.Type:
			evt.Type.Class = event.ToDeviceEventType
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				continue
			}
			d := mach.HandleEncryptedEvent(ctx, evt)
			if d == nil {
				continue
			}
			if strings.HasPrefix(d.Type.Type, "m.call.") {
				out = append(out, Received{Sender: d.Sender, Type: d.Type.Type, Encrypted: true, Content: d.Content.VeryRaw, At: time.Now()})
			}
		case strings.HasPrefix(evt.Type.Type, "m.call."):
			out = append(out, Received{Sender: evt.Sender, Type: evt.Type.Type, Content: evt.Content.VeryRaw, At: time.Now()})
		default:
			kept = append(kept, evt)
		}
	}
	res.ToDevice.Events = kept
	if len(out) > 0 {
		c.mu.Lock()
		c.received = append(c.received, out...)
		c.mu.Unlock()
	}
	return out
}

func (c *Client) onEvent(_ context.Context, evt *event.Event) {
	if evt.RoomID == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rv := c.rooms[evt.RoomID]
	if rv == nil {
		rv = &roomView{joined: map[id.UserID]bool{}, members: map[id.UserID]json.RawMessage{}}
		c.rooms[evt.RoomID] = rv
	}
	switch {
	case evt.Type.Type == event.StateMember.Type && evt.StateKey != nil:
		var m struct {
			Membership event.Membership `json:"membership"`
		}
		_ = json.Unmarshal(evt.Content.VeryRaw, &m)
		rv.joined[id.UserID(*evt.StateKey)] = m.Membership == event.MembershipJoin
	case evt.Type.Type == TypeMember && evt.StateKey != nil:
		rv.members[id.UserID(*evt.StateKey)] = append(json.RawMessage(nil), evt.Content.VeryRaw...)
	case evt.Type == event.EventMessage:
		c.Note(evt)
	}
}

// notify wakes everyone waiting for a change.
func (c *Client) notify() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// wait blocks until cond (checked under the lock) holds or ctx ends.
func (c *Client) wait(ctx context.Context, what string, cond func() bool) error {
	for {
		c.mu.Lock()
		ok := cond()
		ch := c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-ch:
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// CreateRoom creates a private room, invites users, lets everyone send call member events
// (as Element Call rooms do) and waits until the invitees have joined.
func (c *Client) CreateRoom(ctx context.Context, invite []id.UserID, encrypted bool) (id.RoomID, error) {
	req := &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: invite, Name: "group call"}
	if encrypted {
		testclient.Encrypted(req)
	}
	resp, err := c.cli.CreateRoom(ctx, req)
	if err != nil {
		return "", fmt.Errorf("create room: %w", err)
	}
	var pl event.PowerLevelsEventContent
	if err := c.cli.StateEvent(ctx, resp.RoomID, event.StatePowerLevels, "", &pl); err != nil {
		return "", fmt.Errorf("read power levels: %w", err)
	}
	if pl.Events == nil {
		pl.Events = map[string]int{}
	}
	pl.Events[TypeCall] = 0
	pl.Events[TypeMember] = 0
	if _, err := c.cli.SendStateEvent(ctx, resp.RoomID, event.StatePowerLevels, "", &pl); err != nil {
		return "", fmt.Errorf("set power levels: %w", err)
	}
	return resp.RoomID, nil
}

// JoinRoom joins a room the participant was invited to.
func (c *Client) JoinRoom(ctx context.Context, room id.RoomID) error {
	var err error
	for i := 0; i < 10; i++ {
		if _, err = c.cli.JoinRoomByID(ctx, room); err == nil {
			return c.WaitJoined(ctx, room, c.cli.UserID)
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("join %s: %w", room, err)
}

// WaitJoined waits until user is joined to room, as this participant's sync sees it.
func (c *Client) WaitJoined(ctx context.Context, room id.RoomID, user id.UserID) error {
	return c.wait(ctx, fmt.Sprintf("%s to join", user), func() bool {
		rv := c.rooms[room]
		return rv != nil && rv.joined[user]
	})
}

// Received returns the call signalling received so far.
func (c *Client) Received() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.received...)
}

// Violations lists what a js-sdk client would have rejected or choked on in the signalling
// it received: missing fields, wrong session ids, seq gaps, invites without a stream.
func (c *Client) Violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.violations...)
}

func (c *Client) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.log.Warn().Str("violation", msg).Msg("Protocol violation")
	c.mu.Lock()
	c.violations = append(c.violations, msg)
	c.mu.Unlock()
}

// CreateCall sends the group call state event and returns its conf id.
func (c *Client) CreateCall(ctx context.Context, room id.RoomID) (string, error) {
	conf := genCallID()
	content := map[string]any{"m.intent": "m.room", "m.type": "m.video", "io.element.ptt": false, "dataChannelsEnabled": false}
	if _, err := c.cli.SendStateEvent(ctx, room, event.Type{Type: TypeCall, Class: event.StateEventType}, conf, content); err != nil {
		return "", fmt.Errorf("create group call: %w", err)
	}
	return conf, nil
}

// EndCall terminates the group call (js-sdk GroupCall.terminate).
func (c *Client) EndCall(ctx context.Context, room id.RoomID, conf string) error {
	content := map[string]any{"m.intent": "m.room", "m.type": "m.video", "m.terminated": "call_ended"}
	_, err := c.cli.SendStateEvent(ctx, room, event.Type{Type: TypeCall, Class: event.StateEventType}, conf, content)
	return err
}

// MemberContent returns a user's call member event content as this participant last saw it.
func (c *Client) MemberContent(room id.RoomID, user id.UserID) json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rv := c.rooms[room]; rv != nil {
		return rv.members[user]
	}
	return nil
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func genCallID() string {
	return fmt.Sprintf("%d%s", time.Now().UnixMilli(), randomID(8))
}

func newUUID() string {
	h := randomID(16)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
}

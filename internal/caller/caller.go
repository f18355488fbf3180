// Package caller is a synthetic Matrix 1:1 caller that behaves like matrix-js-sdk's
// MatrixCall on the wire (protocols.md §1 and §6): string version "1", the stable
// sdp_stream_metadata key, an invite without candidates followed by early m.call.candidates
// ending with an empty candidate, select_answer after the answer, screenshare through
// m.call.negotiate, and Opus DTX gaps. The demo and the integration tests use it.
package caller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/internal/testclient"
)

// Options configure a Client.
type Options struct {
	Homeserver  string
	UserID      string
	AccessToken string
	DeviceID    string
	// DataDir holds the crypto store (needed for encrypted rooms).
	DataDir string
	Logger  zerolog.Logger
}

// Client is one caller account, syncing.
type Client struct {
	cli    *mautrix.Client
	crypto *cryptohelper.CryptoHelper
	log    zerolog.Logger

	mc *testclient.Client
	testclient.Chat
	mu       sync.Mutex
	calls    map[string]*Call
	members  map[id.RoomID]map[id.UserID]event.Membership
	memberCh chan struct{}
	events   []Received
}

// Notice is a message the caller saw in a room.
type Notice = testclient.Message

// Received is a call event the caller received (for assertions).
type Received struct {
	RoomID  id.RoomID
	Sender  id.UserID
	Type    string
	Content json.RawMessage
}

// New logs the caller in with its access token and starts syncing.
func New(ctx context.Context, o Options) (*Client, error) {
	syncer := testclient.NewSyncer()
	mc, err := testclient.New(ctx, testclient.Options{
		Homeserver: o.Homeserver, UserID: o.UserID, AccessToken: o.AccessToken, DeviceID: o.DeviceID,
		DataDir: o.DataDir, Kind: "caller", Logger: o.Logger,
	}, syncer)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cli: mc.Matrix, crypto: mc.Crypto, mc: mc, Chat: testclient.NewChat(mc.Matrix), log: o.Logger.With().Str("caller", o.UserID).Logger(),
		calls: map[string]*Call{}, members: map[id.RoomID]map[id.UserID]event.Membership{}, memberCh: make(chan struct{}, 1),
	}
	syncer.OnEvent(c.onEvent)
	mc.Start(ctx)
	return c, nil
}

// Close stops syncing.
func (c *Client) Close() error {
	return c.mc.Close()
}

// Matrix exposes the mautrix client (tests send hostile raw events through it).
func (c *Client) Matrix() *mautrix.Client { return c.cli }

// UserID is the caller's id.
func (c *Client) UserID() id.UserID { return c.cli.UserID }

// CreateDM creates a room with the caller and invitee, optionally encrypted, and waits
// until the invitee has joined.
func (c *Client) CreateDM(ctx context.Context, invitee id.UserID, encrypted bool) (id.RoomID, error) {
	req := &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", Invite: []id.UserID{invitee}, IsDirect: true}
	if encrypted {
		testclient.Encrypted(req)
	}
	resp, err := c.cli.CreateRoom(ctx, req)
	if err != nil {
		return "", fmt.Errorf("create room: %w", err)
	}
	if err := c.WaitMembership(ctx, resp.RoomID, invitee, event.MembershipJoin); err != nil {
		return "", err
	}
	return resp.RoomID, nil
}

// WaitMembership waits until user has membership m in room, as seen by the caller's sync.
func (c *Client) WaitMembership(ctx context.Context, room id.RoomID, user id.UserID, m event.Membership) error {
	for {
		c.mu.Lock()
		got := c.members[room][user]
		c.mu.Unlock()
		if got == m {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to %s %s: %w", user, m, room, ctx.Err())
		case <-c.memberCh:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Received returns the call events the caller received so far.
func (c *Client) Received() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.events...)
}

// SendRaw sends any content as a room event (encrypted if the room is).
func (c *Client) SendRaw(ctx context.Context, room id.RoomID, evtType string, content any) error {
	_, err := c.cli.SendMessageEvent(ctx, room, event.Type{Type: evtType, Class: event.MessageEventType}, content)
	return err
}

// LeaveRoom leaves a room.
func (c *Client) LeaveRoom(ctx context.Context, room id.RoomID) error {
	_, err := c.cli.LeaveRoom(ctx, room)
	return err
}

func (c *Client) onEvent(ctx context.Context, evt *event.Event) {
	switch {
	case evt.Type == event.StateMember:
		m := evt.Content.AsMember()
		c.mu.Lock()
		if c.members[evt.RoomID] == nil {
			c.members[evt.RoomID] = map[id.UserID]event.Membership{}
		}
		c.members[evt.RoomID][id.UserID(evt.GetStateKey())] = m.Membership
		c.mu.Unlock()
		select {
		case c.memberCh <- struct{}{}:
		default:
		}
	case evt.Type == event.EventMessage:
		c.Note(evt)
	default:
		if len(evt.Type.Type) < 7 || evt.Type.Type[:7] != "m.call." || evt.Sender == c.cli.UserID {
			return
		}
		c.mu.Lock()
		c.events = append(c.events, Received{RoomID: evt.RoomID, Sender: evt.Sender, Type: evt.Type.Type, Content: evt.Content.VeryRaw})
		var common voip.Common
		_ = json.Unmarshal(evt.Content.VeryRaw, &common)
		call := c.calls[common.CallID]
		c.mu.Unlock()
		if call != nil {
			call.onEvent(evt.Type.Type, evt.Content.VeryRaw)
		}
	}
}

var errNoAnswer = errors.New("no answer")

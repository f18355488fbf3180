// Package testclient is the Matrix side of the test harness's simulated participants
// (internal/caller, internal/meshpeer, internal/lkpeer): a client logged in with an
// access token, its crypto store, its sync loop, its chat (the messages it sends, and an
// inbox of those others send), and the early ICE candidates of the MSC2746 peers' calls.
package testclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Options say who the participant is and where its crypto store lives.
type Options struct {
	Homeserver  string
	UserID      string
	AccessToken string
	DeviceID    string
	// DataDir holds the crypto store, named Kind-DeviceID.db.
	DataDir string
	// Kind names the participant in logs, errors and the store file ("caller").
	Kind   string
	Logger zerolog.Logger
}

// Client is a participant's Matrix client with end-to-end encryption set up.
type Client struct {
	Matrix *mautrix.Client
	Crypto *cryptohelper.CryptoHelper

	log    zerolog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// New creates the client with syncer (a mautrix.DefaultSyncer or one embedding it) and sets
// up its crypto store; Start begins syncing.
func New(ctx context.Context, o Options, syncer mautrix.Syncer) (*Client, error) {
	cli, err := mautrix.NewClient(o.Homeserver, id.UserID(o.UserID), o.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("%s client: %w", o.Kind, err)
	}
	cli.DeviceID = id.DeviceID(o.DeviceID)
	cli.Log = o.Logger.With().Str("component", o.Kind+"-matrix").Logger().Level(zerolog.WarnLevel)
	cli.Syncer = syncer
	pickle := make([]byte, 16)
	_, _ = rand.Read(pickle)
	helper, err := cryptohelper.NewCryptoHelper(cli, []byte(hex.EncodeToString(pickle)), filepath.Join(o.DataDir, o.Kind+"-"+o.DeviceID+".db"))
	if err != nil {
		return nil, fmt.Errorf("%s crypto store: %w", o.Kind, err)
	}
	if err := helper.Init(ctx); err != nil {
		return nil, fmt.Errorf("%s crypto init: %w", o.Kind, err)
	}
	helper.Machine().IgnorePostDecryptionParseErrors = true
	cli.Crypto = helper
	return &Client{Matrix: cli, Crypto: helper, log: o.Logger.With().Str(o.Kind, o.UserID).Logger(), done: make(chan struct{})}, nil
}

// NewSyncer is a DefaultSyncer that skips events it cannot parse (tests send hostile ones).
func NewSyncer() *mautrix.DefaultSyncer {
	s := mautrix.NewDefaultSyncer()
	s.ParseErrorHandler = func(*event.Event, error) bool { return true }
	return s
}

// Start syncs until Close, retrying after errors; it outlives ctx's cancellation.
func (c *Client) Start(ctx context.Context) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	// Close cancels the long-poll sync: mautrix logs that as a "Request canceled" warning,
	// which is no news once our own context is cancelled. Real failures keep their lines.
	c.Matrix.Log = c.Matrix.Log.Hook(zerolog.HookFunc(func(e *zerolog.Event, _ zerolog.Level, msg string) {
		if msg == "Request canceled" && sctx.Err() != nil {
			e.Discard()
		}
	}))
	go func() {
		defer close(c.done)
		for sctx.Err() == nil {
			if err := c.Matrix.SyncWithContext(sctx); err != nil && sctx.Err() == nil {
				c.log.Warn().Err(err).Msg("Sync failed")
				time.Sleep(time.Second)
			}
		}
	}()
}

// Close stops syncing and closes the crypto store.
func (c *Client) Close() error {
	if c.cancel != nil {
		c.cancel()
		c.Matrix.StopSync()
		<-c.done
	}
	return c.Crypto.Close()
}

// Message is a text message or notice someone else sent in a room. For an edit, Body,
// Format, FormattedBody and Mentions are those of m.new_content (what clients show).
type Message struct {
	RoomID  id.RoomID
	Sender  id.UserID
	EventID id.EventID
	Body    string
	// Format and FormattedBody are the HTML form ("" when the message has none).
	Format        event.Format
	FormattedBody string
	Mentions      []id.UserID
	// Edit says the message replaces an earlier one, Replaces.
	Edit     bool
	Replaces id.EventID
	// Thread is the root of the thread the message is in ("" for none).
	Thread id.EventID
	At     time.Time
}

// Inbox keeps the messages others send and lets a test wait for one. The zero value is
// ready to use.
type Inbox struct {
	mu   sync.Mutex
	msgs []Message
	ch   chan struct{}
}

func (in *Inbox) wake() chan struct{} {
	if in.ch == nil {
		in.ch = make(chan struct{}, 1)
	}
	return in.ch
}

// Note records evt if it is a message that self did not send.
func (in *Inbox) Note(evt *event.Event, self id.UserID) {
	msg := evt.Content.AsMessage()
	if evt.Type != event.EventMessage || evt.Sender == self {
		return
	}
	m := Message{RoomID: evt.RoomID, Sender: evt.Sender, EventID: evt.ID, At: time.Now()}
	if msg.RelatesTo != nil && msg.RelatesTo.Type == event.RelThread {
		m.Thread = msg.RelatesTo.EventID
	}
	// An edit's top-level content is only a fallback (mautrix cuts it to a few dozen
	// bytes); clients show m.new_content, and so do we.
	shown := msg
	if msg.NewContent != nil && msg.RelatesTo != nil && msg.RelatesTo.Type == event.RelReplace {
		shown = msg.NewContent
		m.Edit, m.Replaces = true, msg.RelatesTo.EventID
	}
	m.Body, m.Format, m.FormattedBody = shown.Body, shown.Format, shown.FormattedBody
	if shown.Mentions != nil {
		m.Mentions = shown.Mentions.UserIDs
	}
	in.mu.Lock()
	in.msgs = append(in.msgs, m)
	ch := in.wake()
	in.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Wait waits for a message in room, received at or after since, whose body matches.
func (in *Inbox) Wait(ctx context.Context, room id.RoomID, since time.Time, match func(string) bool) (Message, error) {
	return in.WaitMessage(ctx, room, since, func(m Message) bool { return match(m.Body) })
}

// WaitMessage waits for a message in room, received at or after since, that match
// accepts.
func (in *Inbox) WaitMessage(ctx context.Context, room id.RoomID, since time.Time, match func(Message) bool) (Message, error) {
	for {
		in.mu.Lock()
		ch := in.wake()
		for _, m := range in.msgs {
			if m.RoomID == room && !m.At.Before(since) && match(m) {
				in.mu.Unlock()
				return m, nil
			}
		}
		in.mu.Unlock()
		select {
		case <-ctx.Done():
			return Message{}, fmt.Errorf("waiting for a message: %w", ctx.Err())
		case <-ch:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// In returns the messages seen in room, oldest first.
func (in *Inbox) In(room id.RoomID) []Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []Message
	for _, m := range in.msgs {
		if m.RoomID == room {
			out = append(out, m)
		}
	}
	return out
}

// Chat is a participant's side of room messages, embedded in each participant: it sends
// text messages (commands to the bot) and keeps those others send, which the
// participant's sync handler passes to Note, for tests to wait for and read.
type Chat struct {
	cli   *mautrix.Client
	inbox *Inbox
}

// NewChat is the chat of cli's user.
func NewChat(cli *mautrix.Client) Chat { return Chat{cli: cli, inbox: &Inbox{}} }

// Note keeps evt if it is a message someone else sent.
func (ch Chat) Note(evt *event.Event) { ch.inbox.Note(evt, ch.cli.UserID) }

// SendMessage sends a text message (a command to the bot).
func (ch Chat) SendMessage(ctx context.Context, room id.RoomID, text string) error {
	_, err := ch.cli.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: text})
	return err
}

// WaitNotice waits for a message in room, received at or after after, whose body
// satisfies match, and returns it.
func (ch Chat) WaitNotice(ctx context.Context, room id.RoomID, after time.Time, match func(string) bool) (Message, error) {
	return ch.inbox.Wait(ctx, room, after, match)
}

// Notices returns the messages seen in room so far, oldest first.
func (ch Chat) Notices(room id.RoomID) []Message { return ch.inbox.In(room) }

// Encrypted makes the room req creates end-to-end encrypted (Megolm), as clients create
// encrypted rooms.
func Encrypted(req *mautrix.ReqCreateRoom) {
	req.InitialState = append(req.InitialState, &event.Event{
		Type:    event.StateEncryption,
		Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
	})
}

// Package lkpeer is a synthetic Element Call participant for the integration tests and the
// demo. It does on the wire what Element Call (matrix-js-sdk's MatrixRTC session and
// LiveKit's client SDK) does: it publishes its MatrixRTC membership (session state, the
// older per-user list, or a sticky rtc.member event), gets a LiveKit token from the focus'
// JWT service with its Matrix OpenID token, publishes Opus, VP8 and H.264 tracks with
// server-sdk-go, encrypts every frame as the client SDK does (per-participant key, key
// index, IV and trailer; package framecrypt), and hands its media key to every other member
// device over Olm to-device messages (or, for the older format, room events), re-sharing it
// with devices that join and rotating it on request.
package lkpeer

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	protologger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/internal/testclient"
)

// Membership formats (protocols.md §3.1).
const (
	FormatSession = "session" // per-device state event, Element Call's default
	FormatLegacy  = "legacy"  // per-user state event with a memberships list
	FormatSticky  = "sticky"  // org.matrix.msc4143.rtc.member event
)

// Key transports.
const (
	KeysToDevice = "to_device" // Olm-encrypted to-device messages (current)
	KeysRoom     = "room"      // room events (Element Call v0.5-v0.9)
)

// Options configure a Peer.
type Options struct {
	Homeserver  string
	UserID      string
	AccessToken string
	DeviceID    string
	// DataDir holds the crypto store.
	DataDir string
	// ServiceURL is the JWT service the peer names as its focus.
	ServiceURL string
	// Format is the membership format (default FormatSession).
	Format string
	// FocusSelection for session memberships (default multi_sfu).
	FocusSelection string
	// Encrypt turns on per-participant media encryption.
	Encrypt bool
	// KeyTransport is KeysToDevice (default) or KeysRoom.
	KeyTransport string
	// OnlyCrossSigned sends keys only to devices their owner cross-signed, as clients that
	// exclude insecure devices do.
	OnlyCrossSigned bool
	// KeyDelay holds back the key for a device that joins the call (a slow client).
	KeyDelay time.Duration
	// ExternalMedia: Join does the Matrix side only (membership, token, keys) and another
	// client carries the media with ExternalAccess and MediaKey (a browser in the tests).
	ExternalMedia bool
	// Intent is the m.call.intent of the membership (default "video"; "audio" for a
	// voice call as Element X places it).
	Intent string
	Logger zerolog.Logger
}

// Peer is one Element Call participant device.
type Peer struct {
	opts   Options
	cli    *mautrix.Client
	crypto *cryptohelper.CryptoHelper
	mc     *testclient.Client
	inbox  testclient.Inbox
	log    zerolog.Logger

	mu       sync.Mutex
	room     id.RoomID
	memberID string
	// memberEvent is the event id of the peer's membership (a ring references it).
	memberEvent id.EventID
	joined      time.Time
	slots       map[string][]matrixrtc.Member
	keyIndex    uint8
	key         []byte
	// sendIndex/sendKey are what frames are encrypted with (switched after useKeyDelay).
	sendIndex uint8
	sendKey   []byte
	keyed     map[matrixrtc.DeviceKey]keyedAt // what was last sent to each device
	lkRoom    *lksdk.Room
	external  *sfuAccess // set by Join with ExternalMedia
	tracks    []*Track
	keyWG     sync.WaitGroup
}

// Message is a text message or notice someone else sent in a room.
type Message = testclient.Message

// WaitMessage waits for a message in room, received after since, whose body matches.
func (p *Peer) WaitMessage(ctx context.Context, room id.RoomID, since time.Time, match func(string) bool) (Message, error) {
	return p.inbox.Wait(ctx, room, since, match)
}

// MessagesIn returns the messages seen in room, edits included (Message.Edit).
func (p *Peer) MessagesIn(room id.RoomID) []Message { return p.inbox.In(room) }

// Messages returns the bodies of the messages seen in room.
func (p *Peer) Messages(room id.RoomID) []string {
	var out []string
	for _, m := range p.inbox.In(room) {
		out = append(out, m.Body)
	}
	return out
}

// useKeyDelay is how long a new key is distributed before frames use it (js-sdk default).
const useKeyDelay = time.Second

// New logs in with the access token, sets up encryption and starts syncing.
func New(ctx context.Context, o Options) (*Peer, error) {
	if o.Format == "" {
		o.Format = FormatSession
	}
	if o.FocusSelection == "" {
		o.FocusSelection = matrixrtc.SelectMultiSFU
	}
	if o.KeyTransport == "" {
		o.KeyTransport = KeysToDevice
	}
	if o.Intent == "" {
		o.Intent = "video"
	}
	syncer := testclient.NewSyncer()
	mc, err := testclient.New(ctx, testclient.Options{
		Homeserver: o.Homeserver, UserID: o.UserID, AccessToken: o.AccessToken, DeviceID: o.DeviceID,
		DataDir: o.DataDir, Kind: "lkpeer", Logger: o.Logger,
	}, syncer)
	if err != nil {
		return nil, err
	}
	p := &Peer{
		opts: o, cli: mc.Matrix, crypto: mc.Crypto, mc: mc, log: o.Logger.With().Str("peer", o.UserID).Logger(),
		slots: map[string][]matrixrtc.Member{}, keyed: map[matrixrtc.DeviceKey]keyedAt{},
	}
	syncer.OnEvent(p.onEvent)
	mc.Start(ctx)
	return p, nil
}

// Matrix exposes the Matrix client (tests create rooms and send commands with it).
func (p *Peer) Matrix() *mautrix.Client { return p.cli }

// UserID is the peer's user.
func (p *Peer) UserID() id.UserID { return p.cli.UserID }

// DeviceID is the peer's device.
func (p *Peer) DeviceID() id.DeviceID { return p.cli.DeviceID }

// Identity is the LiveKit identity the peer's membership implies (valid after Join).
func (p *Peer) Identity() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opts.Format == FormatSticky {
		return matrixrtc.HashedIdentity(string(p.cli.UserID), string(p.cli.DeviceID), p.memberID)
	}
	return string(p.cli.UserID) + ":" + string(p.cli.DeviceID)
}

// KeyIndex is the index of the key frames are encrypted with now.
func (p *Peer) KeyIndex() uint8 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sendIndex
}

func newKey() []byte {
	k := make([]byte, 16)
	_, _ = rand.Read(k)
	return k
}

// Join enters the room's call: the membership first (so members send it keys), then the
// SFU, then its key goes to every member device.
func (p *Peer) Join(ctx context.Context, room id.RoomID) error {
	p.mu.Lock()
	p.room = room
	p.joined = time.Now()
	p.memberID = string(p.cli.UserID) + ":" + string(p.cli.DeviceID)
	if p.opts.Format == FormatSticky {
		p.memberID = randomID()
	}
	if p.opts.Encrypt {
		p.keyIndex, p.key = 0, newKey()
		p.sendIndex, p.sendKey = 0, p.key
	}
	p.mu.Unlock()
	if err := p.loadMembers(ctx, room); err != nil {
		return err
	}
	if err := p.publishMembership(ctx, false); err != nil {
		return err
	}
	tok, err := p.cli.RequestOpenIDToken(ctx)
	if err != nil {
		return fmt.Errorf("openid token: %w", err)
	}
	acc, err := p.token(ctx, tok)
	if err != nil {
		return err
	}
	if p.opts.ExternalMedia {
		p.mu.Lock()
		p.external = &acc
		p.mu.Unlock()
		p.distributeKey(ctx, false)
		return nil
	}
	lkRoom, err := lksdk.ConnectToRoomWithToken(acc.url, acc.jwt, lksdk.NewRoomCallback(),
		lksdk.WithAutoSubscribe(false), lksdk.WithLogger(protologger.GetDiscardLogger()))
	if err != nil {
		return fmt.Errorf("connect to LiveKit: %w", err)
	}
	p.mu.Lock()
	p.lkRoom = lkRoom
	p.mu.Unlock()
	p.log.Info().Str("identity", lkRoom.LocalParticipant.Identity()).Str("livekit_room", lkRoom.Name()).Msg("Joined the call")
	p.distributeKey(ctx, false)
	return nil
}

// publishMembership sends the peer's membership in its format; leave sends the empty one.
func (p *Peer) publishMembership(ctx context.Context, leave bool) error {
	p.mu.Lock()
	room, memberID, joined := p.room, p.memberID, p.joined
	p.mu.Unlock()
	user, dev := p.cli.UserID, p.cli.DeviceID
	focus := map[string]string{"type": "livekit", "livekit_service_url": p.opts.ServiceURL, "livekit_alias": string(room)}
	var evtID id.EventID
	defer func() {
		if !leave && evtID != "" {
			p.mu.Lock()
			p.memberEvent = evtID
			p.mu.Unlock()
		}
	}()
	switch p.opts.Format {
	case FormatSticky:
		// As matrix-js-sdk 43's StickyEventMembershipManager writes it.
		content := map[string]any{"slot_id": "m.call#ROOM", "msc4354_sticky_key": memberID}
		if !leave {
			content = map[string]any{
				"slot_id":     "m.call#ROOM",
				"application": map[string]any{"type": "m.call", "m.call.intent": p.opts.Intent},
				"member":      map[string]string{"user_id": string(user), "device_id": string(dev), "id": memberID},
				"transports": map[string]any{
					"published":     []map[string]string{{"type": "livekit", "livekit_service_url": p.opts.ServiceURL}},
					"can_subscribe": []string{"livekit"},
				},
				"versions":           []string{},
				"msc4354_sticky_key": memberID,
			}
		}
		resp, err := p.cli.SendMessageEvent(ctx, room, matrixrtc.TypeRTCMember, content, mautrix.ReqSendEvent{UnstableStickyDuration: time.Hour})
		if err != nil {
			return fmt.Errorf("send sticky membership: %w", err)
		}
		evtID = resp.EventID
		return nil
	case FormatLegacy:
		content := map[string]any{"memberships": []any{}}
		if !leave {
			content["memberships"] = []any{map[string]any{
				"application": "m.call", "call_id": "", "scope": "m.room", "device_id": dev,
				"membershipID": randomID(), "expires": 3600000, "created_ts": joined.UnixMilli(),
				"foci_active": []any{focus},
			}}
		}
		resp, err := p.cli.SendStateEvent(ctx, room, matrixrtc.TypeCallMember, string(user), content)
		if err != nil {
			return fmt.Errorf("send legacy membership: %w", err)
		}
		evtID = resp.EventID
		return nil
	default:
		key := matrixrtc.SessionStateKey(user, dev, "10")
		content := map[string]any{}
		if !leave {
			content = map[string]any{
				"application": "m.call", "call_id": "", "scope": "m.room", "device_id": dev,
				"membershipID": memberID, "expires": 14400000, "m.call.intent": p.opts.Intent,
				"focus_active":   map[string]string{"type": "livekit", "focus_selection": p.opts.FocusSelection},
				"foci_preferred": []any{focus},
			}
		}
		resp, err := p.cli.SendStateEvent(ctx, room, matrixrtc.TypeCallMember, key, content)
		if err != nil {
			return fmt.Errorf("send session membership: %w", err)
		}
		evtID = resp.EventID
		return nil
	}
}

// Ring rings the room as matrix-js-sdk 43 does for the first member of a DM call
// (MatrixRTCSession.sendCallNotify): org.matrix.msc4075.rtc.notification, "ring",
// referencing the peer's membership, valid for lifetime from sentAt (a past sentAt makes
// a ring that expired on its way). It returns the notification's event id.
func (p *Peer) Ring(ctx context.Context, sentAt time.Time, lifetime time.Duration) (id.EventID, error) {
	p.mu.Lock()
	room, member := p.room, p.memberEvent
	p.mu.Unlock()
	if member == "" {
		return "", errors.New("ring before joining the call")
	}
	content := map[string]any{
		"slot_id":            "m.call#ROOM",
		"m.mentions":         map[string]any{"user_ids": []string{}, "room": true},
		"notification_type":  "ring",
		"m.relates_to":       map[string]string{"event_id": string(member), "rel_type": "m.reference"},
		"sender_ts":          sentAt.UnixMilli(),
		"lifetime":           lifetime.Milliseconds(),
		"msc4354_sticky_key": "m.call#ROOM",
		"m.call.intent":      p.opts.Intent,
	}
	resp, err := p.cli.SendMessageEvent(ctx, room, matrixrtc.TypeRTCNotification, content)
	if err != nil {
		return "", fmt.Errorf("ring: %w", err)
	}
	return resp.EventID, nil
}

type sfuAccess struct{ url, jwt string }

// token asks the JWT service as Element Call does for its own connection: /sfu/get for
// state-event memberships ("@user:server:DEVICE" identity), /get_token for sticky ones
// (hashed identity).
func (p *Peer) token(ctx context.Context, tok *mautrix.RespOpenIDToken) (sfuAccess, error) {
	p.mu.Lock()
	room, memberID := p.room, p.memberID
	p.mu.Unlock()
	oid := map[string]any{"access_token": tok.AccessToken, "token_type": tok.TokenType, "matrix_server_name": tok.MatrixServerName, "expires_in": tok.ExpiresIn}
	var path string
	var body map[string]any
	if p.opts.Format == FormatSticky {
		path = "/get_token"
		body = map[string]any{"room_id": room, "slot_id": "m.call#ROOM", "openid_token": oid,
			"member": map[string]string{"id": memberID, "claimed_user_id": string(p.cli.UserID), "claimed_device_id": string(p.cli.DeviceID)}}
	} else {
		path = "/sfu/get"
		body = map[string]any{"room": room, "openid_token": oid, "device_id": p.cli.DeviceID}
	}
	var out struct {
		URL string `json:"url"`
		JWT string `json:"jwt"`
	}
	if err := postJSON(ctx, p.opts.ServiceURL+path, body, &out); err != nil {
		return sfuAccess{}, fmt.Errorf("JWT service %s: %w", path, err)
	}
	return sfuAccess{url: out.URL, jwt: out.JWT}, nil
}

// Leave stops publishing, leaves the SFU and takes the membership back.
func (p *Peer) Leave(ctx context.Context) error {
	return errors.Join(p.leaveSFU(), p.publishMembership(ctx, true))
}

// Close stops syncing (after Leave).
func (p *Peer) Close() error {
	_ = p.leaveSFU() // after Leave, nothing is left; errors were Leave's to report
	p.keyWG.Wait()
	return p.mc.Close()
}

// RotateKey makes a new key at the next index, sends it to every member device, and
// encrypts with it after useKeyDelay, as js-sdk's encryption manager does when a member
// leaves.
func (p *Peer) RotateKey(ctx context.Context) error {
	p.mu.Lock()
	if !p.opts.Encrypt {
		p.mu.Unlock()
		return errors.New("not encrypting")
	}
	p.keyIndex++
	p.key = newKey()
	idx, key := p.keyIndex, p.key
	p.mu.Unlock()
	p.distributeKey(ctx, true)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(useKeyDelay):
	}
	p.mu.Lock()
	p.sendIndex, p.sendKey = idx, key
	p.mu.Unlock()
	p.log.Info().Uint8("key_index", idx).Msg("Encrypting with the rotated key")
	return nil
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

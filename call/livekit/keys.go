package livekit

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/livekit/framecrypt"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

// TypeEncryptionKeys carries Element Call's per-participant media keys (to-device, or the
// older room event).
var TypeEncryptionKeys = event.Type{Type: "io.element.call.encryption_keys", Class: event.MessageEventType}

// MediaKey is one key a participant's device sent for its media.
type MediaKey struct {
	RoomID   id.RoomID
	Device   matrixrtc.DeviceKey
	MemberID string
	Index    uint8
	Material []byte
	// SentTs is the sender's clock (sent_ts), used to drop keys that arrive out of order.
	SentTs int64
}

// toDeviceKeys is io.element.call.encryption_keys as a to-device message (js-sdk
// ToDeviceKeyTransport).
type toDeviceKeys struct {
	Keys *struct {
		Index *int   `json:"index"`
		Key   string `json:"key"`
	} `json:"keys"`
	Member *struct {
		ID              string `json:"id"`
		ClaimedDeviceID string `json:"claimed_device_id"`
	} `json:"member"`
	RoomID string `json:"room_id"`
	SentTs int64  `json:"sent_ts"`
}

// roomKeys is io.element.call.encryption_keys as a room event (js-sdk RoomKeyTransport,
// Element Call v0.5-v0.9).
type roomKeys struct {
	Keys []struct {
		Index *int   `json:"index"`
		Key   string `json:"key"`
	} `json:"keys"`
	DeviceID string `json:"device_id"`
	CallID   string `json:"call_id"`
	SentTs   int64  `json:"sent_ts"`
}

// maxKeysPerEvent bounds the keys taken from one room event.
const maxKeysPerEvent = 16

// ParseKeyEvent reads media keys from an io.element.call.encryption_keys event. To-device
// keys count only when they arrived Olm-encrypted (the event is flagged SourceDecrypted);
// the sending device is the one Olm authenticated when known. Room events count only in
// the room's main call. The event's sender is the key owner.
func ParseKeyEvent(evt *event.Event, content json.RawMessage) ([]MediaKey, error) {
	if evt.Type.Type != TypeEncryptionKeys.Type {
		return nil, nil
	}
	if len(content) > 16<<10 {
		return nil, fmt.Errorf("key event of %d bytes", len(content))
	}
	src := evt.Mautrix.EventSource
	if src&event.SourceToDevice != 0 || evt.RoomID == "" {
		if src&event.SourceDecrypted == 0 {
			return nil, fmt.Errorf("media key from %s sent without Olm encryption; ignored", evt.Sender)
		}
		var c toDeviceKeys
		if err := json.Unmarshal(content, &c); err != nil {
			return nil, fmt.Errorf("to-device media key: %w", err)
		}
		if c.Keys == nil || c.Keys.Index == nil || c.Member == nil || c.RoomID == "" {
			return nil, fmt.Errorf("to-device media key from %s without keys, member or room_id", evt.Sender)
		}
		device := c.Member.ClaimedDeviceID
		if d := evt.Mautrix.TrustSource; d != nil && d.DeviceID != "" {
			if device != "" && device != string(d.DeviceID) {
				return nil, fmt.Errorf("media key from %s claims device %q but came from device %s", evt.Sender, device, d.DeviceID)
			}
			device = string(d.DeviceID)
		}
		if !matrixrtc.ValidID(device) {
			return nil, fmt.Errorf("to-device media key from %s without a device", evt.Sender)
		}
		k, err := mediaKey(*c.Keys.Index, c.Keys.Key)
		if err != nil {
			return nil, fmt.Errorf("to-device media key from %s: %w", evt.Sender, err)
		}
		k.RoomID = id.RoomID(c.RoomID)
		k.Device = matrixrtc.DeviceKey{User: evt.Sender, Device: id.DeviceID(device)}
		k.MemberID = c.Member.ID
		if k.MemberID == "" || !matrixrtc.ValidID(k.MemberID) {
			k.MemberID = string(evt.Sender) + ":" + device
		}
		k.SentTs = c.SentTs
		return []MediaKey{k}, nil
	}
	var c roomKeys
	if err := json.Unmarshal(content, &c); err != nil {
		return nil, fmt.Errorf("room media keys: %w", err)
	}
	if c.CallID != "" && c.CallID != "ROOM" {
		return nil, nil
	}
	if !matrixrtc.ValidID(c.DeviceID) {
		return nil, fmt.Errorf("room media keys from %s without device_id", evt.Sender)
	}
	sent := c.SentTs
	if sent == 0 {
		sent = evt.Timestamp
	}
	var out []MediaKey
	for i, k := range c.Keys {
		if i == maxKeysPerEvent {
			break
		}
		if k.Index == nil {
			continue
		}
		mk, err := mediaKey(*k.Index, k.Key)
		if err != nil {
			return out, fmt.Errorf("room media key from %s: %w", evt.Sender, err)
		}
		mk.RoomID = evt.RoomID
		mk.Device = matrixrtc.DeviceKey{User: evt.Sender, Device: id.DeviceID(c.DeviceID)}
		mk.MemberID = string(evt.Sender) + ":" + c.DeviceID
		mk.SentTs = sent
		out = append(out, mk)
	}
	return out, nil
}

func mediaKey(index int, b64 string) (MediaKey, error) {
	if index < 0 || index > 255 {
		return MediaKey{}, fmt.Errorf("key index %d out of 0-255", index)
	}
	b64 = strings.TrimSpace(b64)
	material, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		material, err = base64.RawStdEncoding.DecodeString(b64)
	}
	if err != nil {
		return MediaKey{}, fmt.Errorf("key is not base64")
	}
	if len(material) == 0 || len(material) > framecrypt.MaxMaterial {
		return MediaKey{}, fmt.Errorf("key of %d bytes", len(material))
	}
	return MediaKey{Index: uint8(index), Material: material}, nil
}

// keyStore holds the media keys of one call, per sending device. Keys are kept per device
// (as Element Call's encryption manager does) and mapped to LiveKit identities through the
// memberships. Safe for concurrent use.
type keyStore struct {
	mu    sync.Mutex
	rings map[matrixrtc.DeviceKey]*framecrypt.Keyring
	sent  map[matrixrtc.DeviceKey]map[uint8]int64
	// received counts keys taken, for status and logs.
	received int
	last     time.Time
}

func newKeyStore() *keyStore {
	return &keyStore{rings: map[matrixrtc.DeviceKey]*framecrypt.Keyring{}, sent: map[matrixrtc.DeviceKey]map[uint8]int64{}}
}

// maxKeyDevices bounds the devices a call keeps keys for: every member device of a room
// at most (the backend takes keys only from members).
const maxKeyDevices = matrixrtc.MaxRoomMemberships

// add stores a key. A key for an index that is older (by the sender's clock) than the one
// already there is dropped, as js-sdk drops out-of-order keys. It reports whether the key
// was taken.
func (s *keyStore) add(k MediaKey) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ring := s.rings[k.Device]
	if ring == nil {
		if len(s.rings) >= maxKeyDevices {
			return false, fmt.Errorf("keys of more than %d devices", maxKeyDevices)
		}
		ring = framecrypt.NewKeyring()
		s.rings[k.Device] = ring
		s.sent[k.Device] = map[uint8]int64{}
	}
	if prev, ok := s.sent[k.Device][k.Index]; ok && k.SentTs != 0 && k.SentTs < prev {
		return false, nil
	}
	if err := ring.SetKey(k.Index, k.Material); err != nil {
		return false, err
	}
	s.sent[k.Device][k.Index] = k.SentTs
	s.received++
	s.last = time.Now()
	return true, nil
}

// ring returns the keyring of a device, creating an empty one so that a track can wait
// for keys that are still on their way. Beyond maxKeyDevices the ring is not kept (no key
// will reach it).
func (s *keyStore) ring(d matrixrtc.DeviceKey) *framecrypt.Keyring {
	s.mu.Lock()
	defer s.mu.Unlock()
	ring := s.rings[d]
	if ring == nil {
		ring = framecrypt.NewKeyring()
		if len(s.rings) >= maxKeyDevices {
			return ring
		}
		s.rings[d] = ring
		s.sent[d] = map[uint8]int64{}
	}
	return ring
}

// devices returns how many devices have a keyring.
func (s *keyStore) devices() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rings)
}

// keyQueue keeps media keys per room for a while: keys of members for a room that is not
// being recorded yet, and keys that arrived before their sender's membership (to-device
// messages are handled before the room events of the same sync). Bounded per room, in
// rooms, and in age. Not safe for concurrent use.
type keyQueue struct {
	rooms    map[id.RoomID][]queuedKey
	perRoom  int
	maxRooms int
	ttl      time.Duration
}

type queuedKey struct {
	key MediaKey
	at  time.Time
}

func newKeyQueue(perRoom, maxRooms int, ttl time.Duration) *keyQueue {
	return &keyQueue{rooms: map[id.RoomID][]queuedKey{}, perRoom: perRoom, maxRooms: maxRooms, ttl: ttl}
}

// add keeps k; when the room is full its oldest key goes. It reports false when no room
// could be made.
func (q *keyQueue) add(k MediaKey, now time.Time) bool {
	list := q.fresh(k.RoomID, now)
	if list == nil && len(q.rooms) >= q.maxRooms {
		q.expire(now)
		if len(q.rooms) >= q.maxRooms {
			return false
		}
	}
	if len(list) >= q.perRoom {
		list = list[1:]
	}
	q.rooms[k.RoomID] = append(list, queuedKey{key: k, at: now})
	return true
}

// take removes and returns the room's unexpired keys that keep accepts (all when keep is nil).
func (q *keyQueue) take(room id.RoomID, now time.Time, keep func(MediaKey) bool) []MediaKey {
	var out []MediaKey
	var rest []queuedKey
	for _, e := range q.fresh(room, now) {
		if keep == nil || keep(e.key) {
			out = append(out, e.key)
		} else {
			rest = append(rest, e)
		}
	}
	if len(rest) == 0 {
		delete(q.rooms, room)
	} else {
		q.rooms[room] = rest
	}
	return out
}

// drop forgets a room's keys.
func (q *keyQueue) drop(room id.RoomID) { delete(q.rooms, room) }

// fresh returns the room's unexpired keys (and forgets the others).
func (q *keyQueue) fresh(room id.RoomID, now time.Time) []queuedKey {
	list := q.rooms[room]
	kept := list[:0]
	for _, e := range list {
		if now.Sub(e.at) < q.ttl {
			kept = append(kept, e)
		}
	}
	if len(kept) == 0 {
		delete(q.rooms, room)
		return nil
	}
	q.rooms[room] = kept
	return kept
}

// expire forgets every expired key.
func (q *keyQueue) expire(now time.Time) {
	for room := range q.rooms {
		q.fresh(room, now)
	}
}

// count returns the keys kept for a room.
func (q *keyQueue) count(room id.RoomID) int { return len(q.rooms[room]) }

// count returns how many keys were taken.
func (s *keyStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received
}

// identityDevice maps a LiveKit participant identity to a Matrix device: through the
// memberships (which know hashed identities), else by the "@user:server:DEVICE" form.
func identityDevice(identity string, members []matrixrtc.Member) (matrixrtc.DeviceKey, bool) {
	for _, m := range members {
		if m.Identity == identity {
			return m.Key(), true
		}
	}
	return matrixrtc.DeviceOfIdentity(identity)
}

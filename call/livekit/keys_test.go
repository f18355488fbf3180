package livekit

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

func toDeviceKeyEvent(sender, olmDevice string, decrypted bool, content string) (*event.Event, json.RawMessage) {
	evt := &event.Event{Type: TypeEncryptionKeys, Sender: id.UserID(sender)}
	evt.Mautrix.EventSource = event.SourceToDevice
	if decrypted {
		evt.Mautrix.EventSource |= event.SourceDecrypted
		evt.Mautrix.TrustSource = &id.Device{UserID: id.UserID(sender), DeviceID: id.DeviceID(olmDevice)}
	}
	return evt, json.RawMessage(content)
}

func TestParseToDeviceKeys(t *testing.T) {
	// As js-sdk's ToDeviceKeyTransport sends it.
	content := `{"keys":{"index":3,"key":"AAECAwQFBgcICQoLDA0ODw=="},"room_id":"!r:hs",
"member":{"claimed_device_id":"ADEV","id":"@a:hs:ADEV"},"session":{"call_id":"","application":"m.call","scope":"m.room"},"sent_ts":1700}`
	evt, c := toDeviceKeyEvent("@a:hs", "ADEV", true, content)
	keys, err := ParseKeyEvent(evt, c)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v err %v", keys, err)
	}
	k := keys[0]
	if k.RoomID != "!r:hs" || k.Device != (matrixrtc.DeviceKey{User: "@a:hs", Device: "ADEV"}) || k.Index != 3 || len(k.Material) != 16 || k.Material[15] != 15 || k.SentTs != 1700 {
		t.Fatalf("key %+v", k)
	}
	// Plain (not Olm) to-device keys are refused, as MSC4143 asks.
	evt, c = toDeviceKeyEvent("@a:hs", "ADEV", false, content)
	if keys, err := ParseKeyEvent(evt, c); len(keys) != 0 || err == nil {
		t.Fatal("cleartext to-device key accepted")
	}
	// A claimed device that is not the Olm sender's is refused.
	evt, c = toDeviceKeyEvent("@a:hs", "OTHER", true, content)
	if keys, err := ParseKeyEvent(evt, c); len(keys) != 0 || err == nil {
		t.Fatal("key for another device accepted")
	}
	for _, bad := range []string{
		`{"keys":{"index":256,"key":"AAEC"},"room_id":"!r:hs","member":{"claimed_device_id":"ADEV"}}`,
		`{"keys":{"index":1,"key":"!!!"},"room_id":"!r:hs","member":{"claimed_device_id":"ADEV"}}`,
		`{"keys":{"index":1,"key":""},"room_id":"!r:hs","member":{"claimed_device_id":"ADEV"}}`,
		`{"keys":{"key":"AAEC"},"room_id":"!r:hs","member":{"claimed_device_id":"ADEV"}}`,
		`{"keys":{"index":1,"key":"AAEC"},"member":{"claimed_device_id":"ADEV"}}`,
		`[]`,
	} {
		evt, c := toDeviceKeyEvent("@a:hs", "ADEV", true, bad)
		if keys, err := ParseKeyEvent(evt, c); len(keys) != 0 || err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestParseRoomKeys(t *testing.T) {
	evt := &event.Event{Type: TypeEncryptionKeys, Sender: "@b:hs", RoomID: "!r:hs", Timestamp: 99}
	evt.Mautrix.EventSource = event.SourceTimeline | event.SourceDecrypted
	content := `{"keys":[{"index":0,"key":"AAECAwQFBgcICQoLDA0ODw=="},{"index":1,"key":"AAECAwQFBgcICQoLDA0ODw"}],"device_id":"BDEV","call_id":""}`
	keys, err := ParseKeyEvent(evt, json.RawMessage(content))
	if err != nil || len(keys) != 2 || keys[1].Index != 1 || keys[0].Device != (matrixrtc.DeviceKey{User: "@b:hs", Device: "BDEV"}) || keys[0].SentTs != 99 {
		t.Fatalf("room keys %+v err %v", keys, err)
	}
}

func TestKeyStoreOrder(t *testing.T) {
	s := newKeyStore()
	d := matrixrtc.DeviceKey{User: "@a:hs", Device: "A"}
	mat := func(b byte) []byte { m := make([]byte, 16); m[0] = b; return m }
	ring := s.ring(d) // a track waits on the ring before any key exists
	if ok, err := s.add(MediaKey{Device: d, Index: 0, Material: mat(1), SentTs: 100}); !ok || err != nil {
		t.Fatal("first key refused")
	}
	g := ring.Generation(0)
	if ok, _ := s.add(MediaKey{Device: d, Index: 0, Material: mat(2), SentTs: 50}); ok {
		t.Fatal("older key replaced a newer one")
	}
	if ok, _ := s.add(MediaKey{Device: d, Index: 0, Material: mat(3), SentTs: 200}); !ok || ring.Generation(0) == g {
		t.Fatal("newer key not taken by the ring the track holds")
	}
	if s.count() != 2 {
		t.Fatalf("count %d", s.count())
	}
}

func TestIdentityDevice(t *testing.T) {
	members := []matrixrtc.Member{{UserID: "@c:hs", DeviceID: "C", Identity: "hashhash"}}
	for identity, want := range map[string]matrixrtc.DeviceKey{
		"hashhash":               {User: "@c:hs", Device: "C"},
		"@a:hs:ADEV":             {User: "@a:hs", Device: "ADEV"},
		"@a:localhost:8008:ADEV": {User: "@a:localhost:8008", Device: "ADEV"},
	} {
		if got, ok := identityDevice(identity, members); !ok || got != want {
			t.Errorf("%s -> %v %v, want %v", identity, got, ok, want)
		}
	}
	for _, bad := range []string{"alice", "@nocolon", "@a:hs:"} {
		if got, ok := identityDevice(bad, members); ok {
			t.Errorf("%s mapped to %v", bad, got)
		}
	}
}

// Media keys count only from members of the room's call. A key that comes before its
// sender's membership (to-device messages are handled before the room events of the same
// sync) is held briefly and taken when the membership arrives; one from a device that never
// becomes a member is not kept.
func TestKeysOnlyFromMembers(t *testing.T) {
	now := time.Now()
	b := New(&fakeMatrix{}, nil, Options{}, testLogger(t))
	defer b.Close(context.Background())
	key := func(sender, device string) *event.Event {
		evt, _ := toDeviceKeyEvent(sender, device, true, `{"keys":{"index":0,"key":"AAECAwQFBgcICQoLDA0ODw=="},"room_id":"!r:hs","member":{"claimed_device_id":"`+device+`"},"sent_ts":1}`)
		evt.Content.VeryRaw = json.RawMessage(`{"keys":{"index":0,"key":"AAECAwQFBgcICQoLDA0ODw=="},"room_id":"!r:hs","member":{"claimed_device_id":"` + device + `"},"sent_ts":1}`)
		return evt
	}
	counts := func() (pending, held int) {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.pending.count("!r:hs"), b.held.count("!r:hs")
	}
	b.HandleEvent(context.Background(), key("@mallory:hs", "MDEV"))
	b.HandleEvent(context.Background(), key("@alice:hs", "ALICEDEV"))
	if p, h := counts(); p != 0 || h != 2 {
		t.Fatalf("keys of non-members: %d pending, %d held; want 0 and 2", p, h)
	}
	b.HandleEvent(context.Background(), memberEvent("@alice:hs", "_@alice:hs_ALICEDEV_m.call", now, aliceSession))
	if p, h := counts(); p != 1 || h != 1 {
		t.Fatalf("after alice's membership: %d pending, %d held; want alice's key pending and mallory's held", p, h)
	}
	b.mu.Lock()
	left := b.held.take("!r:hs", now.Add(heldKeyTTL+time.Second), nil)
	b.mu.Unlock()
	if len(left) != 0 {
		t.Fatalf("a non-member's key outlived its hold: %+v", left)
	}
	// Once a member, keys go straight to the pending list.
	b.HandleEvent(context.Background(), key("@alice:hs", "ALICEDEV"))
	if p, _ := counts(); p != 2 {
		t.Fatalf("member key not kept: %d pending", p)
	}
}

func TestKeyQueueBounds(t *testing.T) {
	now := time.Now()
	q := newKeyQueue(3, 2, time.Minute)
	for i := 0; i < 5; i++ {
		q.add(MediaKey{RoomID: "!a:hs", Index: uint8(i)}, now)
	}
	if got := q.take("!a:hs", now, nil); len(got) != 3 || got[0].Index != 2 {
		t.Fatalf("per-room bound: %+v, want the newest 3", got)
	}
	q.add(MediaKey{RoomID: "!a:hs"}, now)
	q.add(MediaKey{RoomID: "!b:hs"}, now)
	if q.add(MediaKey{RoomID: "!c:hs"}, now) {
		t.Fatal("a third room was kept beyond the room bound")
	}
	if !q.add(MediaKey{RoomID: "!c:hs"}, now.Add(2*time.Minute)) {
		t.Fatal("expired rooms did not make room")
	}
	if got := q.take("!a:hs", now.Add(2*time.Minute), nil); len(got) != 0 {
		t.Fatalf("expired keys returned: %+v", got)
	}
}

func TestKeyStoreBound(t *testing.T) {
	s := newKeyStore()
	mat := make([]byte, 16)
	for i := 0; i < maxKeyDevices; i++ {
		if ok, err := s.add(MediaKey{Device: matrixrtc.DeviceKey{User: "@u:hs", Device: id.DeviceID(fmt.Sprint(i))}, Material: mat}); !ok || err != nil {
			t.Fatalf("device %d: %v %v", i, ok, err)
		}
	}
	if ok, err := s.add(MediaKey{Device: matrixrtc.DeviceKey{User: "@u:hs", Device: "one-too-many"}, Material: mat}); ok || err == nil {
		t.Fatal("keys of more devices than a room has members were kept")
	}
	_ = s.ring(matrixrtc.DeviceKey{User: "@u:hs", Device: "track-only"})
	if s.devices() != maxKeyDevices {
		t.Fatalf("%d keyrings kept", s.devices())
	}
}

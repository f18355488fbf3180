package livekit

import (
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
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
	if k.RoomID != "!r:hs" || k.Device != (DeviceKey{"@a:hs", "ADEV"}) || k.Index != 3 || len(k.Material) != 16 || k.Material[15] != 15 || k.SentTs != 1700 {
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
	if err != nil || len(keys) != 2 || keys[1].Index != 1 || keys[0].Device != (DeviceKey{"@b:hs", "BDEV"}) || keys[0].SentTs != 99 {
		t.Fatalf("room keys %+v err %v", keys, err)
	}
}

func TestKeyStoreOrder(t *testing.T) {
	s := newKeyStore()
	d := DeviceKey{"@a:hs", "A"}
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
	members := []Member{{UserID: "@c:hs", DeviceID: "C", Identity: "hashhash"}}
	for identity, want := range map[string]DeviceKey{
		"hashhash":               {"@c:hs", "C"},
		"@a:hs:ADEV":             {"@a:hs", "ADEV"},
		"@a:localhost:8008:ADEV": {"@a:localhost:8008", "ADEV"},
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

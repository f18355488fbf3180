package matrixrtc

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func member(devices ...string) json.RawMessage {
	return json.RawMessage(`{"m.calls":[{"m.call_id":"conf1","m.devices":[` + strings.Join(devices, ",") + `]}]}`)
}

func dev(id, session string, expires int64, feeds string) string {
	return fmt.Sprintf(`{"device_id":%q,"session_id":%q,"expires_ts":%d,"feeds":%s}`, id, session, expires, feeds)
}

// meshDevices reads user's member event (keyed by user, sent at now) and returns the
// devices of conf that count at now.
func meshDevices(user string, raw json.RawMessage, conf string, now time.Time) ([]Member, error) {
	evt, c := stateEvent(TypeCallMember, user, user, now, string(raw))
	u, err := Parse(evt, c, now)
	var out []Member
	for _, m := range u.Only(FormatMSC3401).Members {
		if m.SlotID == conf {
			out = append(out, m)
		}
	}
	return out, err
}

func TestParseMSC3401AndExpiry(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	future := now.Add(time.Hour).UnixMilli()
	raw := member(
		dev("DEV1", "s1", future, `[{"purpose":"m.usermedia"}]`),
		dev("DEV2", "s2", now.Add(-time.Second).UnixMilli(), `[]`), // expired
		dev("DEV3", "s3", future, `[{"purpose":"m.usermedia"},{"purpose":"m.screenshare"}]`),
	)
	devs, err := meshDevices("@alice:hs", raw, "conf1", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].DeviceID != "DEV1" || devs[1].DeviceID != "DEV3" {
		t.Fatalf("valid devices: %+v", devs)
	}
	if devs[0].Screensharing() || !devs[1].Screensharing() {
		t.Error("screensharing flags wrong")
	}
	if d := devs[0]; d.UserID != "@alice:hs" || d.SessionID != "s1" || d.Format != FormatMSC3401 || d.UsesSFU || d.CreatedTs != now.UnixMilli() {
		t.Errorf("device: %+v", d)
	}
	if got, _ := meshDevices("@alice:hs", raw, "conf1", time.UnixMilli(future)); len(got) != 0 {
		t.Errorf("devices valid at their expiry: %+v", got)
	}
	if got, _ := meshDevices("@alice:hs", raw, "other", now); len(got) != 0 {
		t.Errorf("devices of another conf: %+v", got)
	}
	// A call entry that names foci: media through an SFU.
	sfu := json.RawMessage(`{"m.calls":[{"m.call_id":"conf1","m.foci":["@sfu:hs"],"m.devices":[` + dev("C", "sc", future, `[]`) + `]}]}`)
	if got, _ := meshDevices("@carol:hs", sfu, "conf1", now); len(got) != 1 || !got[0].UsesSFU {
		t.Errorf("device of a call with foci: %+v", got)
	}
}

// Each check js-sdk makes (strings, number, array) and the bounds the recorder adds.
func TestParseMSC3401RejectsMalformedDevices(t *testing.T) {
	future := time.Now().Add(time.Hour).UnixMilli()
	bad := []string{
		`{"device_id":1,"session_id":"s","expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`{"device_id":"D","session_id":null,"expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`{"device_id":"D","session_id":"s","expires_ts":"` + fmt.Sprint(future) + `","feeds":[]}`,
		`{"device_id":"D","session_id":"s","expires_ts":` + fmt.Sprint(future) + `,"feeds":{}}`,
		`{"device_id":"D","session_id":"s","expires_ts":` + fmt.Sprint(future) + `}`,
		`{"device_id":"","session_id":"s","expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`{"device_id":"D E","session_id":"s","expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`{"device_id":"../../etc","session_id":"s\n","expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`{"device_id":"` + strings.Repeat("D", 256) + `","session_id":"s","expires_ts":` + fmt.Sprint(future) + `,"feeds":[]}`,
		`"not an object"`,
	}
	for _, b := range bad {
		got, err := meshDevices("@a:hs", member(b), "conf1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("accepted %s: %+v", b, got)
		}
	}
	// A huge expiry does not overflow into the past.
	if got, _ := meshDevices("@a:hs", member(`{"device_id":"D","session_id":"s","expires_ts":1e308,"feeds":[]}`), "conf1", time.Now()); len(got) != 1 {
		t.Errorf("device with far-future expiry: %+v", got)
	}
}

func TestParseMSC3401BoundsAndOtherFormats(t *testing.T) {
	now := time.Now()
	future := now.Add(time.Hour).UnixMilli()
	var devs []string
	for i := 0; i < 52; i++ {
		devs = append(devs, dev(fmt.Sprintf("D%d", i), "s", future, `[]`))
	}
	got, err := meshDevices("@a:hs", member(devs...), "conf1", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != MaxDevicesPerUser {
		t.Errorf("%d devices kept, bound %d", len(got), MaxDevicesPerUser)
	}
	// The bound is per event, over all its calls.
	var many []string
	for c := 0; c < maxCallsPerEvent; c++ {
		many = append(many, fmt.Sprintf(`{"m.call_id":"conf%d","m.devices":[%s,%s]}`, c, dev(fmt.Sprintf("A%d", c), "s", future, `[]`), dev(fmt.Sprintf("B%d", c), "s", future, `[]`)))
	}
	evt, c := stateEvent(TypeCallMember, "@a:hs", "@a:hs", now, `{"m.calls":[`+strings.Join(many, ",")+`]}`)
	if u, _ := Parse(evt, c, now); len(u.Members) != MaxDevicesPerUser {
		t.Errorf("%d devices over %d calls kept, bound %d per event", len(u.Members), maxCallsPerEvent, MaxDevicesPerUser)
	}
	if _, err := meshDevices("@a:hs", json.RawMessage(`{"x":"`+strings.Repeat("a", maxContent)+`"}`), "conf1", now); err == nil {
		t.Error("oversized content accepted")
	}
	// m.calls under a MatrixRTC per-device key is not an MSC3401 member.
	evt, c = stateEvent(TypeCallMember, "@a:hs", "_@a:hs_DEV", now, string(member(dev("D", "s", future, `[]`))))
	if u, err := Parse(evt, c, now); err == nil || len(u.Members) != 0 {
		t.Errorf("a MatrixRTC per-device state key was taken for a user id: %+v %v", u.Members, err)
	}
	// MatrixRTC "memberships" format: not a full-mesh member.
	if got, err := meshDevices("@a:hs", json.RawMessage(`{"memberships":[{"call_id":"","device_id":"D"}]}`), "", now); len(got) != 0 {
		t.Errorf("memberships format: %v %v", got, err)
	}
	// Left: empty object, or no list.
	for _, left := range []string{`{}`, `{"m.calls":null}`, `{"m.calls":[]}`} {
		if got, err := meshDevices("@a:hs", json.RawMessage(left), "conf1", now); err != nil || len(got) != 0 {
			t.Errorf("%s: %v %v", left, got, err)
		}
	}
}

func FuzzParseMSC3401(f *testing.F) {
	f.Add([]byte(member(dev("D", "s", 1<<50, `[{"purpose":"m.usermedia"}]`))))
	f.Add([]byte(`{"m.calls":[{"m.call_id":"c","m.devices":[{"device_id":"D","session_id":"s","expires_ts":1e400,"feeds":[]}]}]}`))
	f.Add([]byte(`{"m.calls":null}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		now := time.UnixMilli(0)
		evt, c := stateEvent(TypeCallMember, "@a:hs", "@a:hs", now, string(raw))
		u, _ := Parse(evt, c, now)
		ms := u.Only(FormatMSC3401).Members
		if len(ms) > MaxDevicesPerUser {
			t.Fatalf("unbounded: %d devices", len(ms))
		}
		for _, d := range ms {
			if !ValidASCIIID(d.SlotID) || !ValidASCIIID(string(d.DeviceID)) || !ValidASCIIID(d.SessionID) || len(d.Feeds) > maxFeeds {
				t.Fatalf("bad device %+v", d)
			}
		}
		_, _ = msc3401Content(raw, "c", "BOT", &msc3401Device{SessionID: "s", ExpiresAt: time.Now()}, time.Now())
		_, _ = msc3401Without(raw, "BOT", time.Now())
	})
}

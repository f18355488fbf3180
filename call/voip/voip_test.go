package voip

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestVersionAcceptsStringAndNumber(t *testing.T) {
	for in, want := range map[string]bool{`"1"`: true, `1`: true, `0`: false, `"0"`: false, `null`: false, `2`: true, `"2"`: true} {
		var v Version
		if err := json.Unmarshal([]byte(in), &v); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if v.V1 != want {
			t.Errorf("version %s: V1=%v, want %v", in, v.V1, want)
		}
	}
	var v Version
	if err := json.Unmarshal([]byte(`[1]`), &v); err == nil {
		t.Error("array accepted as version")
	}
	b, _ := json.Marshal(V1)
	if string(b) != `"1"` {
		t.Errorf("V1 marshals as %s, js-sdk sends the string \"1\"", b)
	}
}

func TestInviteMetadataKeys(t *testing.T) {
	stable := `{"call_id":"c1","party_id":"DEV","version":"1","lifetime":60000,"offer":{"type":"offer","sdp":"v=0"},"sdp_stream_metadata":{"s1":{"purpose":"m.screenshare"}}}`
	inv, err := ParseInvite(json.RawMessage(stable))
	if err != nil {
		t.Fatal(err)
	}
	if inv.Metadata["s1"].Purpose != PurposeScreenshare || !inv.Version.V1 || inv.Lifetime != 60000 {
		t.Errorf("parsed %+v", inv)
	}
	unstable := strings.Replace(stable, `"sdp_stream_metadata"`, `"org.matrix.msc3077.sdp_stream_metadata"`, 1)
	inv, err = ParseInvite(json.RawMessage(unstable))
	if err != nil || inv.Metadata["s1"].Purpose != PurposeScreenshare {
		t.Errorf("unstable key not read: %+v %v", inv, err)
	}
	none := `{"call_id":"c1","version":0,"lifetime":60000,"offer":{"type":"offer","sdp":"v=0"}}`
	inv, err = ParseInvite(json.RawMessage(none))
	if err != nil || inv.Metadata != nil || inv.Version.V1 {
		t.Errorf("legacy invite: %+v %v", inv, err)
	}
}

func TestAnswerWritesStableEmptyMetadata(t *testing.T) {
	a := Answer{Common: Common{CallID: "c", PartyID: "DEV", Version: V1}, Answer: SessionDescription{Type: "answer", SDP: "v=0"}, Capabilities: &Capabilities{}, Metadata: StreamMetadataMap{}}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("invalid json %s: %v", b, err)
	}
	if string(m["sdp_stream_metadata"]) != "{}" || string(m["version"]) != `"1"` || m["capabilities"] == nil {
		t.Errorf("answer = %s", b)
	}
	if _, ok := m["org.matrix.msc3077.sdp_stream_metadata"]; ok {
		t.Error("answer carries the unstable key")
	}
	back, err := ParseAnswer(b)
	if err != nil || back.Metadata == nil {
		t.Errorf("round trip: %+v %v", back, err)
	}
}

func TestValidation(t *testing.T) {
	bad := map[string]string{
		"path call id":    `{"call_id":"../../x","version":"1","lifetime":1,"offer":{"type":"offer","sdp":"v=0"}}`,
		"empty call id":   `{"call_id":"","version":"1","lifetime":1,"offer":{"type":"offer","sdp":"v=0"}}`,
		"long call id":    `{"call_id":"` + strings.Repeat("a", 300) + `","version":"1","offer":{"type":"offer","sdp":"v=0"}}`,
		"no sdp":          `{"call_id":"c","version":"1","offer":{"type":"offer"}}`,
		"huge sdp":        `{"call_id":"c","version":"1","offer":{"type":"offer","sdp":"` + strings.Repeat("a", MaxSDPLength+1) + `"}}`,
		"answer as offer": `{"call_id":"c","version":"1","offer":{"type":"answer","sdp":"v=0"}}`,
		"bad lifetime":    `{"call_id":"c","version":"1","lifetime":-5,"offer":{"type":"offer","sdp":"v=0"}}`,
		"not an object":   `[1,2]`,
		"bad metadata":    `{"call_id":"c","version":"1","offer":{"type":"offer","sdp":"v=0"},"sdp_stream_metadata":[1]}`,
	}
	for name, raw := range bad {
		if _, err := ParseInvite(json.RawMessage(raw)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
	many := `{"call_id":"c","version":"1","candidates":[` + strings.TrimSuffix(strings.Repeat(`{"candidate":"a"},`, MaxCandidates+1), ",") + `]}`
	if _, err := ParseCandidates(json.RawMessage(many)); err == nil {
		t.Error("too many candidates accepted")
	}
	cands, err := ParseCandidates(json.RawMessage(`{"call_id":"c","version":"1","candidates":[{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"u"},{"candidate":""}]}`))
	if err != nil || len(cands.Candidates) != 2 || cands.Candidates[1].Candidate != "" || *cands.Candidates[0].SDPMid != "0" {
		t.Errorf("candidates: %+v %v", cands, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"call_id":"c1","party_id":"DEV","version":"1","lifetime":60000,"offer":{"type":"offer","sdp":"v=0"},"sdp_stream_metadata":{"s1":{"purpose":"m.screenshare"}}}`))
	f.Add([]byte(`{"call_id":"c","version":1,"candidates":[{"candidate":""}]}`))
	f.Add([]byte(`{"call_id":"c","description":{"type":"offer","sdp":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		raw := json.RawMessage(b)
		_, _ = ParseInvite(raw)
		_, _ = ParseAnswer(raw)
		_, _ = ParseCandidates(raw)
		_, _ = ParseNegotiate(raw)
		_, _ = ParseHangup(raw)
		_, _ = ParseReject(raw)
		_, _ = ParseSelectAnswer(raw)
		if inv, err := ParseInvite(raw); err == nil {
			if !ValidID(inv.CallID) {
				t.Fatalf("invalid call id accepted: %q", inv.CallID)
			}
			if _, err := json.Marshal(inv); err != nil {
				t.Fatalf("accepted invite does not marshal: %v", err)
			}
		}
	})
}

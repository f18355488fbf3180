package matrixrtc

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestPublishTransports(t *testing.T) {
	a := Transport{Type: "livekit", ServiceURL: "https://a"}
	b := Transport{Type: "livekit", ServiceURL: "https://b"}
	c := Transport{Type: "livekit", ServiceURL: "https://c"}
	oldestMode := []Member{
		{Format: FormatSession, UserID: "@x:hs", DeviceID: "X", FocusSelection: SelectOldest, CreatedTs: 200, Transports: []Transport{b}},
		{Format: FormatSession, UserID: "@y:hs", DeviceID: "Y", FocusSelection: SelectOldest, CreatedTs: 100, Transports: []Transport{a}},
	}
	if got := PublishTransports(oldestMode); len(got) != 1 || got[0].ServiceURL != a.ServiceURL || got[0].Owner != "@y:hs" {
		t.Fatalf("oldest_membership: %v, want only the oldest's focus, named by the oldest member", got)
	}
	multi := append(oldestMode[:0:0], oldestMode...)
	multi = append(multi,
		Member{Format: FormatSession, UserID: "@z:hs", DeviceID: "Z", FocusSelection: SelectMultiSFU, CreatedTs: 300, Transports: []Transport{c, a}},
		Member{Format: FormatSticky, UserID: "@w:hs", DeviceID: "W", FocusSelection: SelectMultiSFU, CreatedTs: 50, Transports: []Transport{b}},
		Member{Format: FormatSession, UserID: "@v:hs", DeviceID: "V", FocusSelection: SelectMultiSFU, CreatedTs: 60, Transports: []Transport{{Type: "other", ServiceURL: "https://d"}}},
	)
	got := PublishTransports(multi)
	// The oldest is now the sticky member on b: oldest_membership members publish on b, the
	// multi_sfu one on c, the sticky one on b; "other" transports are skipped.
	urls := map[string]id.UserID{}
	for _, t := range got {
		urls[t.ServiceURL] = t.Owner
	}
	if len(got) != 2 || urls["https://b"] != "@w:hs" || urls["https://c"] != "@z:hs" {
		t.Fatalf("mixed call: %v, want b (named by w) and c (named by z)", got)
	}
	// A legacy member that is the oldest publishes on its own first focus.
	legacy := []Member{{Format: FormatLegacy, UserID: "@l:hs", DeviceID: "L", FocusSelection: SelectOldest, CreatedTs: 1, Transports: []Transport{c}}}
	if got := PublishTransports(legacy); len(got) != 1 || got[0].ServiceURL != c.ServiceURL || got[0].Owner != "@l:hs" {
		t.Fatalf("legacy: %v", got)
	}
	if got := PublishTransports([]Member{{Format: FormatSession, UserID: "@u:hs", Transports: []Transport{a}}}); len(got) != 0 {
		t.Fatalf("a membership without a focus selection publishes on %v", got)
	}
}

func TestNormalizeServiceURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://JWT.Example.org/":          "https://jwt.example.org",
		"https://jwt.example.org:443/lk//":  "https://jwt.example.org/lk",
		"http://127.0.0.1:80":               "http://127.0.0.1",
		"HTTP://127.0.0.1:8080/":            "http://127.0.0.1:8080",
		"https://[::1]:8443/":               "https://[::1]:8443",
		" https://jwt.example.org/livekit ": "https://jwt.example.org/livekit",
	} {
		if got, err := NormalizeServiceURL(in); err != nil || got != want {
			t.Errorf("normalize %q = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "jwt.example.org", "ftp://x", "https://", "https://u@x", "https://x/?a=b", "https://x/#f", "https://x?", "mailto:a@b", "https://" + strings.Repeat("a", 3000)} {
		if got, err := NormalizeServiceURL(bad); err == nil {
			t.Errorf("normalize %q = %q, want an error", bad, got)
		}
	}
}

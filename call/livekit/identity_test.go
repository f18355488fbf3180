package livekit

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

// jwtService answers both token requests as lk-jwt-service does: /sfu/get gives
// "@user:server:DEVICE", /get_token the hashed identity of the claimed member.
type jwtService struct {
	mu    sync.Mutex
	paths []string
}

func (s *jwtService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		DeviceID string `json:"device_id"`
		Member   struct {
			ID       string `json:"id"`
			UserID   string `json:"claimed_user_id"`
			DeviceID string `json:"claimed_device_id"`
		} `json:"member"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	s.mu.Lock()
	s.paths = append(s.paths, r.URL.Path)
	s.mu.Unlock()
	var sub string
	switch r.URL.Path {
	case "/sfu/get":
		sub = "@bot:hs:" + body.DeviceID
	case "/get_token":
		sub = matrixrtc.HashedIdentity(body.Member.UserID, body.Member.DeviceID, body.Member.ID)
	default:
		w.WriteHeader(http.StatusNotFound)
		return
	}
	claims, _ := json.Marshal(map[string]any{"sub": sub, "video": map[string]any{"room": "ROOM", "roomJoin": true}})
	_ = json.NewEncoder(w).Encode(map[string]string{"url": "ws://127.0.0.1:7880", "jwt": fakeJWT(string(claims))})
}

// The bot joins LiveKit as the identity its membership implies, whatever format it
// published: "@bot:server:DEVICE" for a state-event membership (from /sfu/get, as Element
// Call's compatibility mode does), the hashed identity of its member id for a sticky one
// (from /get_token). Clients pair a membership with the participant of that identity.
func TestIdentityFollowsMembershipFormat(t *testing.T) {
	svc := &jwtService{}
	srv := newCountingServer(t, false, svc.ServeHTTP)
	mx := &fakeMatrix{}
	b := New(mx, nil, Options{Trust: TrustOptions{TrustedServices: []string{srv.URL}}}, zerolog.Nop())
	defer b.Close(context.Background())
	focus := matrixrtc.Transport{Type: "livekit", ServiceURL: srv.URL}
	for _, tc := range []struct {
		name     string
		own      *matrixrtc.Own
		endpoint string
		identity string
	}{
		{"session", matrixrtc.NewOwn(mx, "!r:hs", matrixrtc.OwnSpec{Format: matrixrtc.FormatSession}, zerolog.Nop()), "sfu/get", "@bot:hs:BOTDEV"},
		{"sticky", matrixrtc.NewOwn(mx, "!r:hs", matrixrtc.OwnSpec{Format: matrixrtc.FormatSticky, MemberID: "m-1"}, zerolog.Nop()), "get_token",
			matrixrtc.HashedIdentity("@bot:hs", "BOTDEV", "m-1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc.mu.Lock()
			svc.paths = nil
			svc.mu.Unlock()
			acc, err := b.access(context.Background(), id.RoomID("!r:hs"), focus, tc.own)
			if err != nil {
				t.Fatal(err)
			}
			if acc.Endpoint != tc.endpoint || acc.Identity != tc.identity || acc.Identity != tc.own.Identity() {
				t.Fatalf("joined as %q via %s; the membership implies %q via %s", acc.Identity, acc.Endpoint, tc.own.Identity(), tc.endpoint)
			}
			svc.mu.Lock()
			defer svc.mu.Unlock()
			if strings.Join(svc.paths, ",") != "/"+tc.endpoint {
				t.Fatalf("asked %v", svc.paths)
			}
		})
	}
}

// The bot's membership follows the members': sticky when one of them publishes sticky.
func TestOwnFormatFollowsMembers(t *testing.T) {
	session := matrixrtc.Member{Format: matrixrtc.FormatSession}
	sticky := matrixrtc.Member{Format: matrixrtc.FormatSticky}
	if ownFormat([]matrixrtc.Member{session}) != matrixrtc.FormatSession || ownFormat([]matrixrtc.Member{session, sticky}) != matrixrtc.FormatSticky {
		t.Fatal("wrong format")
	}
}

// A JWT service that only knows one endpoint still gives access (with the other identity).
func TestFetchAccessLegacyFirst(t *testing.T) {
	var seen []string
	srv := newCountingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.URL.Path)
		if r.URL.Path == "/sfu/get" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"url": "wss://sfu.example", "jwt": fakeJWT(`{"sub":"h","video":{"room":"R"}}`)})
	})
	acc, err := fetchAccess(context.Background(), srv.Client(), tokenRequest{ServiceURL: srv.URL, RoomID: "!r:hs", UserID: "@bot:hs", DeviceID: "D",
		MemberID: "@bot:hs:D", OpenID: openIDForTest(), Legacy: true})
	if err != nil || acc.Endpoint != "get_token" || strings.Join(seen, ",") != "/sfu/get,/get_token" {
		t.Fatalf("%+v %v via %v", acc, err, seen)
	}
}

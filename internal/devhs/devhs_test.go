package devhs

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
)

func startServer(t *testing.T, federation bool) *Server {
	t.Helper()
	testenv.RequireIntegration(t)
	ctx := testenv.Context(t)
	srv, err := Start(ctx, Options{Dir: t.TempDir(), Federation: federation})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	testenv.LogOnFailure(t, "dendrite", func() string { return srv.LogTail(8000) })
	return srv
}

func TestIntegrationRoomInviteJoinSync(t *testing.T) {
	srv := startServer(t, false)
	ctx := testenv.Context(t)

	alice, err := srv.Register(ctx, "alice", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	if alice.UserID != srv.UserID("alice") || alice.AccessToken == "" || alice.DeviceID == "" {
		t.Fatalf("unexpected account %+v", alice)
	}
	if _, err := srv.RegisterAdmin(ctx, "bob", "bob-password", false); err != nil {
		t.Fatal(err)
	}
	bob, err := srv.Login(ctx, "bob", "bob-password", "BOBDEVICE")
	if err != nil {
		t.Fatal(err)
	}
	if bob.DeviceID != "BOBDEVICE" {
		t.Fatalf("login kept device %q, want BOBDEVICE", bob.DeviceID)
	}

	var room struct {
		RoomID string `json:"room_id"`
	}
	if err := srv.Do(ctx, alice, "POST", "/_matrix/client/v3/createRoom",
		map[string]any{"preset": "private_chat", "name": "devhs test"}, &room); err != nil {
		t.Fatal(err)
	}
	roomPath := "/_matrix/client/v3/rooms/" + url.PathEscape(room.RoomID)
	if err := srv.Do(ctx, alice, "POST", roomPath+"/invite", map[string]any{"user_id": bob.UserID}, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.Do(ctx, bob, "POST", roomPath+"/join", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.Do(ctx, alice, "PUT", roomPath+"/send/m.room.message/txn1",
		map[string]any{"msgtype": "m.text", "body": "hello bob"}, nil); err != nil {
		t.Fatal(err)
	}

	type syncResp struct {
		NextBatch string `json:"next_batch"`
		Rooms     struct {
			Join map[string]struct {
				Timeline struct {
					Events []struct {
						Type    string         `json:"type"`
						Sender  string         `json:"sender"`
						Content map[string]any `json:"content"`
					} `json:"events"`
				} `json:"timeline"`
			} `json:"join"`
		} `json:"rooms"`
	}
	deadline := time.Now().Add(20 * time.Second)
	since := ""
	for {
		var resp syncResp
		q := "/_matrix/client/v3/sync?timeout=2000"
		if since != "" {
			q += "&since=" + url.QueryEscape(since)
		}
		if err := srv.Do(ctx, bob, "GET", q, nil, &resp); err != nil {
			t.Fatal(err)
		}
		since = resp.NextBatch
		for _, ev := range resp.Rooms.Join[room.RoomID].Timeline.Events {
			if ev.Type == "m.room.message" && ev.Sender == alice.UserID && ev.Content["body"] == "hello bob" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("bob's sync never showed alice's message in the joined room")
		}
	}
}

// With federation on, a service can verify a Matrix OpenID token at the
// homeserver's federation API, as lk-jwt-service does.
func TestIntegrationOpenIDUserInfo(t *testing.T) {
	srv := startServer(t, true)
	ctx := testenv.Context(t)
	alice, err := srv.Register(ctx, "alice", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken      string `json:"access_token"`
		MatrixServerName string `json:"matrix_server_name"`
		ExpiresIn        int64  `json:"expires_in"`
	}
	if err := srv.Do(ctx, alice, "POST", "/_matrix/client/v3/user/"+url.PathEscape(alice.UserID)+"/openid/request_token",
		map[string]any{}, &tok); err != nil {
		t.Fatal(err)
	}
	if tok.MatrixServerName != srv.ServerName() {
		t.Errorf("matrix_server_name = %q, want %q", tok.MatrixServerName, srv.ServerName())
	}
	t.Logf("openid token expires_in=%d (Dendrite is known to report a wrong value)", tok.ExpiresIn)
	var info struct {
		Sub string `json:"sub"`
	}
	if err := srv.Do(ctx, Account{}, "GET", "/_matrix/federation/v1/openid/userinfo?access_token="+url.QueryEscape(tok.AccessToken), nil, &info); err != nil {
		t.Fatal(err)
	}
	if info.Sub != alice.UserID {
		t.Fatalf("userinfo sub = %q, want %q", info.Sub, alice.UserID)
	}
	err = srv.Do(ctx, Account{}, "GET", "/_matrix/federation/v1/openid/userinfo?access_token=bogus", nil, &info)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("userinfo with a bogus token: %v, want a 401", err)
	}
}

func TestEditConfigKeepsOtherKeys(t *testing.T) {
	in := "version: 2\nglobal:\n  server_name: localhost\n  presence:\n    enable_inbound: true\n    enable_outbound: true\nlogging:\n- type: std\n  level: trace\n"
	out, err := editConfig([]byte(in), []edit{
		{"global.server_name", "localhost:1234"},
		{"global.presence.enable_outbound", false},
		{"client_api.turn.turn_uris", []string{"turn:127.0.0.1:3478"}},
		{"logging", []map[string]any{{"type": "std", "level": "info"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server_name: localhost:1234", "enable_inbound: true", "enable_outbound: false",
		"- turn:127.0.0.1:3478", "level: info", "version: 2"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("edited config lacks %q:\n%s", want, out)
		}
	}
}

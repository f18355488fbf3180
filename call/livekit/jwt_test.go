package livekit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
)

func fakeJWT(claims string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." + enc.EncodeToString([]byte(claims)) + ".c2ln"
}

func TestFetchAccessEndpoints(t *testing.T) {
	var seen []string
	var bodies []map[string]any
	newService := func(getToken bool) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = append(seen, r.URL.Path)
			var body map[string]any
			_ = json.NewDecoder(r.Body).Decode(&body)
			bodies = append(bodies, body)
			if r.URL.Path == "/get_token" && !getToken {
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"no"}`))
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]string{
				"url": "wss://sfu.example", "jwt": fakeJWT(`{"sub":"ident","exp":2000000000,"video":{"room":"HASHEDROOM","roomJoin":true}}`),
			})
		}))
	}
	req := tokenRequest{RoomID: "!r:hs", UserID: "@bot:hs", DeviceID: "BOT", MemberID: "@bot:hs:BOT",
		OpenID: &mautrix.RespOpenIDToken{AccessToken: "oid", TokenType: "Bearer", MatrixServerName: "hs", ExpiresIn: 3600}}

	current := newService(true)
	defer current.Close()
	req.ServiceURL = current.URL + "/"
	acc, err := fetchAccess(context.Background(), current.Client(), req)
	if err != nil {
		t.Fatal(err)
	}
	if acc.Endpoint != "get_token" || acc.Room != "HASHEDROOM" || acc.Identity != "ident" || acc.URL != "wss://sfu.example" || acc.Expires.Unix() != 2000000000 {
		t.Fatalf("access %+v", acc)
	}
	b := bodies[0]
	member, _ := b["member"].(map[string]any)
	oid, _ := b["openid_token"].(map[string]any)
	if b["room_id"] != "!r:hs" || b["slot_id"] != "m.call#ROOM" || member["claimed_device_id"] != "BOT" || member["id"] != "@bot:hs:BOT" || oid["access_token"] != "oid" {
		t.Fatalf("get_token body %v", b)
	}

	seen, bodies = nil, nil
	legacy := newService(false)
	defer legacy.Close()
	req.ServiceURL = legacy.URL
	acc, err = fetchAccess(context.Background(), legacy.Client(), req)
	if err != nil {
		t.Fatal(err)
	}
	if acc.Endpoint != "sfu/get" || strings.Join(seen, ",") != "/get_token,/sfu/get" || bodies[1]["room"] != "!r:hs" || bodies[1]["device_id"] != "BOT" {
		t.Fatalf("legacy: %+v via %v, body %v", acc, seen, bodies)
	}
}

func TestFetchAccessRejects(t *testing.T) {
	answers := []string{
		`{"url":"wss://sfu.example","jwt":"not-a-jwt"}`,
		`{"url":"file:///etc/passwd","jwt":"` + fakeJWT(`{"video":{"room":"r"}}`) + `"}`,
		`{"url":"wss://sfu.example","jwt":"` + fakeJWT(`{"video":{}}`) + `"}`,
		`{"url":"wss://sfu.example"`,
		strings.Repeat("x", maxServiceAnswer+10),
	}
	for _, a := range answers {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(a)) }))
		_, err := fetchAccess(context.Background(), srv.Client(), tokenRequest{ServiceURL: srv.URL, OpenID: &mautrix.RespOpenIDToken{AccessToken: "x"}})
		srv.Close()
		if err == nil {
			t.Errorf("answer %.60q accepted", a)
		}
	}
	for _, u := range []string{"ftp://x", "https://user:pw@x", "https://x/?q=1", "not a url", ""} {
		if _, err := fetchAccess(context.Background(), http.DefaultClient, tokenRequest{ServiceURL: u, OpenID: &mautrix.RespOpenIDToken{}}); err == nil {
			t.Errorf("service url %q accepted", u)
		}
	}
}

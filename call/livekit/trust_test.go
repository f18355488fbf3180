package livekit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

// countingServer counts every connection and request it gets, and serves handler.
type countingServer struct {
	*httptest.Server
	conns, requests atomic.Int64
}

func newCountingServer(t *testing.T, tls bool, handler http.HandlerFunc) *countingServer {
	t.Helper()
	cs := &countingServer{}
	cs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.requests.Add(1)
		if handler != nil {
			handler(w, r)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	cs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			cs.conns.Add(1)
		}
	}
	if tls {
		cs.StartTLS()
	} else {
		cs.Start()
	}
	t.Cleanup(cs.Close)
	return cs
}

// host is the server's host:port.
func (cs *countingServer) host() string {
	return strings.TrimPrefix(strings.TrimPrefix(cs.URL, "https://"), "http://")
}

// wellKnown serves a .well-known/matrix/client advertising foci.
func wellKnown(foci ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/matrix/client" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		var items []string
		for _, f := range foci {
			items = append(items, fmt.Sprintf(`{"type":"livekit","livekit_service_url":%q}`, f))
		}
		fmt.Fprintf(w, `{"m.homeserver":{"base_url":"https://hs"},"org.matrix.msc4143.rtc_foci":[%s]}`, strings.Join(items, ","))
	}
}

func refusal(t *testing.T, err error, want string) {
	t.Helper()
	var fr *FocusRefusal
	if !errors.As(err, &fr) || !errors.Is(err, ErrUntrustedFocus) {
		t.Fatalf("err %v, want a focus refusal", err)
	}
	if !strings.Contains(fr.Reason, want) {
		t.Fatalf("refusal %q does not say %q", fr.Reason, want)
	}
}

// Listed services are used whatever their address and scheme; unlisted plain http and
// unlisted private addresses are refused before anything is sent anywhere.
func TestFocusTrustListedAndRefused(t *testing.T) {
	svc := newCountingServer(t, false, nil)       // http on loopback
	tlsSvc := newCountingServer(t, true, nil)     // https on loopback
	homeserver := newCountingServer(t, true, nil) // the bot's homeserver: no .well-known
	f := newFocusTrust(TrustOptions{TrustedServices: []string{svc.URL + "/"}, HTTPClient: homeserver.Client()},
		func() string { return homeserver.host() })
	ctx := context.Background()
	if err := f.check(ctx, svc.URL, "@alice:hs"); err != nil {
		t.Fatalf("listed http service refused: %v", err)
	}
	if err := f.check(ctx, strings.ToUpper(svc.URL[:4])+svc.URL[4:]+"/", "@alice:hs"); err != nil {
		t.Fatalf("another spelling of the listed service refused: %v", err)
	}
	other := newCountingServer(t, false, nil)
	refusal(t, f.check(ctx, other.URL, "@mallory:evil"), "plain http")
	refusal(t, f.check(ctx, tlsSvc.URL, "@mallory:evil"), "loopback or private")
	for _, u := range []string{"https://localhost/jwt", "https://10.1.2.3", "https://[::1]:8443", "https://169.254.169.254", "https://[::ffff:127.0.0.1]", "https://100.64.0.1", "https://foo.localhost"} {
		refusal(t, f.check(ctx, u, "@mallory:evil"), "loopback or private")
	}
	refusal(t, f.check(ctx, "ftp://jwt.example", "@mallory:evil"), "not an http(s) URL")
	refusal(t, f.check(ctx, "https://user:pw@jwt.example", "@mallory:evil"), "not an http(s) URL")
	if n := other.conns.Load() + tlsSvc.conns.Load(); n != 0 {
		t.Fatalf("refused services got %d connections", n)
	}
}

// A public https service is used when the bot's homeserver or the member's homeserver
// advertises it; lookups are cached, and a member's homeserver on a private address is
// not looked up at all.
func TestFocusTrustAdvertised(t *testing.T) {
	own := newCountingServer(t, true, wellKnown("https://jwt.own.example/"))
	f := newFocusTrust(TrustOptions{HTTPClient: own.Client(), Transports: func(context.Context) ([]string, error) {
		return []string{"https://transports.own.example"}, nil
	}}, func() string { return own.host() })
	ctx := context.Background()
	if err := f.check(ctx, "https://JWT.own.example:443", "@alice:elsewhere.example"); err != nil {
		t.Fatalf("service advertised by the bot's homeserver refused: %v", err)
	}
	if err := f.check(ctx, "https://transports.own.example/", "@alice:elsewhere.example"); err != nil {
		t.Fatalf("service of the bot's homeserver's rtc/transports refused: %v", err)
	}
	if n := own.requests.Load(); n != 1 {
		t.Fatalf("%d .well-known requests to the bot's homeserver, want 1 (cached)", n)
	}
	// The member's homeserver is on loopback: not asked.
	theirs := newCountingServer(t, true, wellKnown("https://jwt.theirs.example"))
	refusal(t, f.check(ctx, "https://jwt.theirs.example", id.UserID("@mallory:"+theirs.host())), TrustedServicesKey)
	if n := theirs.conns.Load(); n != 0 {
		t.Fatalf("a member's homeserver on loopback got %d connections", n)
	}

	// With loopback allowed (as if it were public): the member's homeserver vouches for
	// its own service, and not for anyone else's.
	f2 := newFocusTrust(TrustOptions{HTTPClient: theirs.Client()}, func() string { return "own.invalid" })
	f2.allowPrivate = true
	f2.guarded = theirs.Client()
	if err := f2.check(ctx, "https://jwt.theirs.example", id.UserID("@alice:"+theirs.host())); err != nil {
		t.Fatalf("service advertised by the member's homeserver refused: %v", err)
	}
	refusal(t, f2.check(ctx, "https://jwt.elsewhere.example", id.UserID("@alice:"+theirs.host())), "advertises it")
}

// The .well-known lookup is bounded: a huge document advertises nothing.
func TestFocusTrustWellKnownBounds(t *testing.T) {
	huge := newCountingServer(t, true, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"org.matrix.msc4143.rtc_foci":[{"type":"livekit","livekit_service_url":"https://jwt.example"}],"pad":"`))
		_, _ = w.Write([]byte(strings.Repeat("x", wellKnownMaxSize)))
		_, _ = w.Write([]byte(`"}`))
	})
	f := newFocusTrust(TrustOptions{HTTPClient: huge.Client()}, func() string { return huge.host() })
	refusal(t, f.check(context.Background(), "https://jwt.example", "@a:hs"), "advertises it")
	if _, err := fetchWellKnownFoci(context.Background(), huge.Client(), huge.host()); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Fatalf("oversized .well-known: %v", err)
	}
	if _, err := fetchWellKnownFoci(context.Background(), huge.Client(), "bad/host"); err == nil {
		t.Fatal("server name with a path accepted")
	}
}

// The guarded transport does not connect to loopback even when a name resolves there, and
// token requests follow no redirect.
func TestGuardedTransportAndNoRedirects(t *testing.T) {
	srv := newCountingServer(t, false, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	hc := tokenClient(&http.Client{}, guardedTransport(nil))
	for _, u := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		_, err := hc.Get(u)
		if err == nil || !errors.Is(err, errPrivateAddress) {
			t.Fatalf("guarded GET %s: %v", u, err)
		}
	}
	if n := srv.conns.Load(); n != 0 {
		t.Fatalf("guarded client made %d connections to loopback", n)
	}
	target := newCountingServer(t, false, nil)
	redirect := newCountingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/steal", http.StatusTemporaryRedirect)
	})
	_, err := fetchAccess(context.Background(), tokenClient(&http.Client{}, nil), tokenRequest{ServiceURL: redirect.URL, RoomID: "!r:hs", OpenID: openIDForTest()})
	if err == nil || target.requests.Load() != 0 {
		t.Fatalf("token request followed a redirect (err %v, %d requests at the target)", err, target.requests.Load())
	}
}

// An unlisted service may not send the bot to a plain-ws or internal SFU.
func TestCheckSFU(t *testing.T) {
	f := newFocusTrust(TrustOptions{TrustedServices: []string{"http://127.0.0.1:8080"}}, func() string { return "hs" })
	ctx := context.Background()
	if err := f.checkSFU(ctx, "http://127.0.0.1:8080", "ws://127.0.0.1:7880"); err != nil {
		t.Fatalf("listed service's SFU refused: %v", err)
	}
	for _, sfu := range []string{"ws://sfu.example", "wss://127.0.0.1:7880", "wss://10.0.0.5", "wss://localhost", "not a url"} {
		if err := f.checkSFU(ctx, "https://jwt.example", sfu); err == nil {
			t.Errorf("SFU %s of an unlisted service accepted", sfu)
		}
	}
	if err := f.checkSFU(ctx, "https://jwt.example", "wss://93.184.216.34:443"); err != nil {
		t.Errorf("public SFU refused: %v", err)
	}
}

func TestPublicAddr(t *testing.T) {
	for s, want := range map[string]bool{
		"93.184.216.34": true, "2606:2800:220:1::1": true,
		"127.0.0.1": false, "10.0.0.1": false, "172.16.5.4": false, "192.168.1.1": false, "169.254.169.254": false,
		"100.64.1.1": false, "0.0.0.0": false, "::1": false, "fe80::1": false, "fd00::1": false, "::ffff:10.0.0.1": false,
		"224.0.0.1": false, "255.255.255.255": false,
	} {
		if got := publicAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("publicAddr(%s) = %v, want %v", s, got, want)
		}
	}
}

// A recording's connection to a focus the bot does not trust ends at once: no OpenID token
// is requested, nothing is sent, and it is not retried in a loop.
func TestUntrustedConnectionGivesUp(t *testing.T) {
	svc := newCountingServer(t, false, nil)
	mx := &fakeMatrix{}
	b := New(mx, nil, Options{}, testLogger(t))
	defer b.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &Recording{b: b, room: "!r:hs", log: testLogger(t), ctx: ctx, cancel: cancel}
	c := newConnection(r, matrixrtc.Transport{Type: "livekit", ServiceURL: svc.URL, Owner: "@mallory:hs"})
	go c.run()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection to an untrusted focus keeps retrying")
	}
	if !errors.Is(c.err(), ErrUntrustedFocus) {
		t.Fatalf("connection error %v", c.err())
	}
	if svc.conns.Load() != 0 || mx.openIDRequests() != 0 {
		t.Fatalf("untrusted focus: %d connections, %d OpenID tokens requested", svc.conns.Load(), mx.openIDRequests())
	}
}

// A recording joins at most maxFociPerCall foci, looks at no more than maxFociChecked, and
// tells the room about refused ones once each, at most maxRefusalNotices times.
func TestRecordingFociBounds(t *testing.T) {
	var listed []string
	for i := 0; i < maxFociPerCall+2; i++ {
		listed = append(listed, fmt.Sprintf("http://127.0.0.1:%d", 20000+i))
	}
	mx := &fakeMatrix{}
	b := New(mx, nil, Options{Trust: TrustOptions{TrustedServices: listed}}, testLogger(t))
	defer b.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &Recording{b: b, room: "!r:hs", log: testLogger(t), ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1),
		foci: map[string]*focusVerdict{}, retired: map[string]focusRetire{}}
	var ts []matrixrtc.Transport
	for _, u := range listed {
		ts = append(ts, matrixrtc.Transport{Type: "livekit", ServiceURL: u, Owner: "@alice:hs"})
	}
	for i := 0; i < 2*maxFociChecked; i++ {
		ts = append(ts, matrixrtc.Transport{Type: "livekit", ServiceURL: fmt.Sprintf("http://10.0.0.%d", i+1), Owner: "@mallory:hs"})
	}
	var got []matrixrtc.Transport
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got = r.trustedLocked(ts, time.Now())
		pending := 0
		for _, v := range r.foci {
			if !v.done {
				pending++
			}
		}
		r.mu.Unlock()
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.wg.Wait()
	if len(got) != maxFociPerCall || got[0].ServiceURL != listed[0] {
		t.Fatalf("joined %d foci (%v), want the first %d", len(got), got, maxFociPerCall)
	}
	if len(r.foci) != maxFociChecked {
		t.Fatalf("%d foci looked at, want at most %d", len(r.foci), maxFociChecked)
	}
	time.Sleep(50 * time.Millisecond) // notices are sent on their own goroutines
	mx.mu.Lock()
	notices := append([]string(nil), mx.notices...)
	mx.mu.Unlock()
	if len(notices) != maxRefusalNotices || !strings.Contains(notices[0], "@mallory:hs") || !strings.Contains(notices[0], TrustedServicesKey) {
		t.Fatalf("notices %q: want %d naming the member and %s", notices, maxRefusalNotices, TrustedServicesKey)
	}
}

// The bot asks an untrusted JWT service for nothing: no OpenID token is even requested
// from the homeserver, and the service sees no connection.
func TestAccessRefusesUntrusted(t *testing.T) {
	svc := newCountingServer(t, false, nil)
	mx := &fakeMatrix{}
	b := New(mx, nil, Options{}, testLogger(t))
	defer b.Close(context.Background())
	_, err := b.access(context.Background(), "!r:hs", matrixrtc.Transport{Type: "livekit", ServiceURL: svc.URL})
	if err == nil || svc.conns.Load() != 0 || mx.openIDRequests() != 0 {
		t.Fatalf("untrusted service: err %v, %d connections, %d OpenID tokens", err, svc.conns.Load(), mx.openIDRequests())
	}
}

package egress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	lk "github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		match         bool
	}{
		{"weekly", "weekly", true},
		{"weekly", "weekly2", false},
		{"weekly", "Weekly", false},
		{"team-*", "team-", true},
		{"team-*", "team-a/b+c", true},
		{"team-*", "xteam-a", false},
		{"*", "anything/at all", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*-call-*", "x-call-y-call-z", true},
		{"*-call", "x-call-y", false},
		{"é?", "éé", true},
		{"a*b*c*d", strings.Repeat("a", 50) + "bcd", true},
		{"a*a*a*a*b", strings.Repeat("a", 200), false},
	} {
		if got := glob(c.pattern, c.name); got != c.match {
			t.Errorf("glob(%q, %q) = %v", c.pattern, c.name, got)
		}
	}
}

func TestOwnCall(t *testing.T) {
	room := id.RoomID("!abc:example.org")
	for _, c := range []struct {
		lk  string
		own bool
	}{
		{matrixrtc.RoomAlias(string(room), matrixrtc.MainSlot), true},
		{string(room), true},
		{matrixrtc.RoomAlias("!other:example.org", matrixrtc.MainSlot), false},
		{"!other:example.org", false},
		{matrixrtc.RoomAlias(string(room), "m.call#other"), false},
		{"", false},
	} {
		if got := ownCall(room, c.lk); got != c.own {
			t.Errorf("ownCall(%q) = %v", c.lk, got)
		}
	}
}

// startFrom asks for a recording from a Matrix room as a user.
func startFrom(h *harness, room id.RoomID, by id.UserID, args ...string) (call.Recording, error) {
	return h.be.Start(context.Background(), call.StartRequest{RoomID: room, By: by, Args: args})
}

// wantRefusal checks a start was refused with a notice that names the keys and the room,
// before anything was asked of LiveKit, and that nothing was recorded.
func wantRefusal(t *testing.T, h *harness, rec call.Recording, err error, room id.RoomID, keys ...string) {
	t.Helper()
	var ue usererr.Error
	if rec != nil || !errors.As(err, &ue) {
		t.Fatalf("not refused: %v, %v", rec, err)
	}
	for _, want := range append(keys, string(room), "may not record") {
		if !strings.Contains(ue.Msg, want) {
			t.Errorf("refusal %q does not say %q", ue.Msg, want)
		}
	}
	if asked, _ := h.api.counts(); asked != 0 {
		t.Errorf("LiveKit was asked %d times about a room the config does not allow", asked)
	}
	if len(h.api.tracks)+len(h.api.composite) != 0 || len(h.be.active) != 0 {
		t.Errorf("egresses were started: %v %v", h.api.tracks, h.api.composite)
	}
}

// By default a deployment records nothing: every form of !start is refused with a notice
// that names the config key, and LiveKit is not even asked whether the room exists.
func TestAccessDefaultRefusesEverything(t *testing.T) {
	h := newHarness(t, func(o *Options, d *config.LiveKitDeployment) { d.AllowedRooms = nil })
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a")))
	for _, args := range [][]string{{"room1"}, {"meet/room1"}, {"room1", "composite"}} {
		rec, err := startFrom(h, "!stranger:evil.example", "@mallory:evil.example", args...)
		wantRefusal(t, h, rec, err, "!stranger:evil.example", "livekit.deployments[meet].allowed_rooms", "livekit.deployments[meet].allowed_users")
	}
}

// Grants by room id and pattern, by user, and allow_all.
func TestAccessGrants(t *testing.T) {
	h := newHarness(t, func(o *Options, d *config.LiveKitDeployment) {
		d.AllowedRooms = []config.LiveKitRoomGrant{{MatrixRoom: "!team:example.org", LiveKitRooms: []string{"weekly", "team-*"}}}
		d.AllowedUsers = []string{"@admin:example.org"}
	})
	for _, r := range []string{"weekly", "team-x", "secret", "weekly2"} {
		h.api.setRoom(r, participant("ann", "Ann"))
	}
	ctx := context.Background()
	for _, c := range []struct {
		room id.RoomID
		by   id.UserID
		ref  string
		ok   bool
	}{
		{"!team:example.org", "@u:example.org", "weekly", true},
		{"!team:example.org", "@u:example.org", "meet/team-x", true},
		{"!team:example.org", "@u:example.org", "secret", false},
		{"!team:example.org", "@u:example.org", "weekly2", false},
		{"!other:example.org", "@u:example.org", "weekly", false},
		{"!other:example.org", "@admin:example.org", "secret", true},
		{"!other:example.org", "@admin:evil.example", "secret", false},
	} {
		tg, err := h.be.resolve(ctx, asker{room: c.room, by: c.by}, c.ref)
		var no *refusal
		switch {
		case c.ok && err != nil:
			t.Errorf("%s by %s: %s refused: %v", c.room, c.by, c.ref, err)
		case !c.ok && !errors.As(err, &no):
			t.Errorf("%s by %s: %s allowed (%+v, %v)", c.room, c.by, c.ref, tg, err)
		}
	}

	open := newHarness(t, func(o *Options, d *config.LiveKitDeployment) { d.AllowedRooms, d.AllowAll = nil, true })
	open.api.setRoom("secret", participant("ann", "Ann"))
	if _, err := open.be.resolve(ctx, asker{room: "!any:example.org"}, "secret"); err != nil {
		t.Errorf("allow_all: %v", err)
	}
}

// fakeAliases is the homeserver's room directory.
type fakeAliases struct {
	mu    sync.Mutex
	rooms map[id.RoomAlias]id.RoomID
	calls int
}

func (f *fakeAliases) resolve(_ context.Context, a id.RoomAlias) (id.RoomID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if r, ok := f.rooms[a]; ok {
		return r, nil
	}
	return "", fmt.Errorf("M_NOT_FOUND: no alias %s", a)
}

// An alias grant follows the homeserver's directory, is resolved only when its patterns
// would allow the room, and is cached so a stranger cannot make the bot flood the
// homeserver.
func TestAccessAliases(t *testing.T) {
	dir := &fakeAliases{rooms: map[id.RoomAlias]id.RoomID{"#team:example.org": "!team:example.org"}}
	h := newHarness(t, func(o *Options, d *config.LiveKitDeployment) {
		o.ResolveAlias = dir.resolve
		d.AllowedRooms = []config.LiveKitRoomGrant{
			{MatrixRoom: "#team:example.org", LiveKitRooms: []string{"weekly"}},
			{MatrixRoom: "#gone:example.org", LiveKitRooms: []string{"*"}},
		}
	})
	h.api.setRoom("weekly", participant("ann", "Ann"))
	ctx := context.Background()
	if _, err := h.be.resolve(ctx, asker{room: "!team:example.org"}, "weekly"); err != nil {
		t.Fatalf("the alias's room: %v", err)
	}
	// Another room is refused, whatever it calls itself: the grant names the alias, and
	// the alias is what the directory says.
	var no *refusal
	if _, err := h.be.resolve(ctx, asker{room: "!impostor:evil.example"}, "weekly"); !errors.As(err, &no) {
		t.Fatalf("another room recorded through an alias grant: %v", err)
	}
	// Cached: many refused !starts resolve each alias once.
	for i := 0; i < 20; i++ {
		_, _ = h.be.resolve(ctx, asker{room: "!impostor:evil.example"}, "weekly")
	}
	if dir.calls != 2 {
		t.Errorf("%d alias lookups, want one per alias", dir.calls)
	}
	// The alias moves to another room: after the cache expires, the grant follows it.
	dir.mu.Lock()
	dir.rooms["#team:example.org"] = "!new:example.org"
	dir.mu.Unlock()
	h.be.aliases.mu.Lock()
	h.be.aliases.cache = nil
	h.be.aliases.mu.Unlock()
	if _, err := h.be.resolve(ctx, asker{room: "!team:example.org"}, "weekly"); !errors.As(err, &no) {
		t.Errorf("the alias's old room is still allowed: %v", err)
	}
	if _, err := h.be.resolve(ctx, asker{room: "!new:example.org"}, "weekly"); err != nil {
		t.Errorf("the alias's new room: %v", err)
	}

	// Without a resolver (or when it fails), an alias grant allows nothing.
	h2 := newHarness(t, func(o *Options, d *config.LiveKitDeployment) {
		d.AllowedRooms = []config.LiveKitRoomGrant{{MatrixRoom: "#team:example.org", LiveKitRooms: []string{"*"}}}
	})
	h2.api.setRoom("weekly", participant("ann", "Ann"))
	if _, err := h2.be.resolve(ctx, asker{room: "!team:example.org"}, "weekly"); !errors.As(err, &no) {
		t.Errorf("an alias grant allowed a room without being resolved: %v", err)
	}
}

// A Meet URL is allowed by its slug or by the LiveKit room Meet names for it; a room with
// no grant is refused before Meet is asked.
func TestAccessMeet(t *testing.T) {
	const uuid = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	var mu sync.Mutex
	asked := 0
	meet := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked++
		mu.Unlock()
		switch r.URL.Path {
		case "/api/v1.0/rooms/weekly-call/":
			_ = json.NewEncoder(w).Encode(map[string]any{"id": uuid, "slug": "weekly-call"})
		case "/api/v1.0/rooms/board/":
			_ = json.NewEncoder(w).Encode(map[string]any{"id": "0b1c2d3e-7425-40de-944b-e07fc1f90ae7", "slug": "board"})
		default:
			http.NotFound(w, r)
		}
	}))
	defer meet.Close()
	h := newHarness(t, func(o *Options, d *config.LiveKitDeployment) {
		d.MeetURLPrefixes = []string{meet.URL + "/"}
		d.AllowedRooms = []config.LiveKitRoomGrant{
			{MatrixRoom: "!slug:example.org", LiveKitRooms: []string{"weekly-*"}},
			{MatrixRoom: "!uuid:example.org", LiveKitRooms: []string{uuid}},
		}
	})
	h.api.setRoom(uuid, participant("a", "A"))
	h.api.setRoom("0b1c2d3e-7425-40de-944b-e07fc1f90ae7", participant("a", "A"))
	ctx := context.Background()
	var no *refusal

	rec, err := startFrom(h, "!stranger:evil.example", "@m:evil.example", meet.URL+"/weekly-call")
	wantRefusal(t, h, rec, err, "!stranger:evil.example", "livekit.deployments[meet].allowed_rooms")
	mu.Lock()
	if asked != 0 {
		t.Errorf("Meet was asked %d times for a room with no grant", asked)
	}
	mu.Unlock()
	for _, c := range []struct {
		room id.RoomID
		ref  string
		ok   bool
	}{
		{"!slug:example.org", meet.URL + "/weekly-call", true}, // by its slug
		{"!uuid:example.org", meet.URL + "/weekly-call", true}, // by the room Meet names
		{"!uuid:example.org", meet.URL + "/" + uuid, true},     // its id in the URL
		{"!slug:example.org", meet.URL + "/" + uuid, false},    // the id does not match weekly-*
		{"!slug:example.org", meet.URL + "/board", false},      // neither slug nor room match
		{"!uuid:example.org", meet.URL + "/board", false},      // neither slug nor room match
		{"!uuid:example.org", "meet/0b1c2d3e-7425-40de-944b-e07fc1f90ae7", false},
	} {
		tg, err := h.be.resolve(ctx, asker{room: c.room}, c.ref)
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %s refused: %v", c.room, c.ref, err)
		case c.ok && tg.room != uuid:
			t.Errorf("%s: %s resolved to %s", c.room, c.ref, tg.room)
		case !c.ok && !errors.As(err, &no):
			t.Errorf("%s: %s allowed (%+v, %v)", c.room, c.ref, tg, err)
		}
	}
}

// With several deployments, a bare room name is looked for only where it is allowed, and
// a refusal names every deployment's key.
func TestAccessSeveralDeployments(t *testing.T) {
	h := newHarness(t, nil)
	other := newFakeAPI()
	d := config.DefaultLiveKitDeployment()
	d.Name, d.URL, d.APIKey, d.APISecret, d.Output = "sfu", "wss://sfu.example.org", "K2", testSecret, config.OutputLocal
	h.be.deps = append(h.be.deps, &deployment{LiveKitDeployment: d, secret: testSecret, api: other, localDir: h.rec.Dir()})
	other.setRoom("x", participant("a", "A"))
	rec, err := startFrom(h, "!stranger:evil.example", "", "x")
	var ue usererr.Error
	if rec != nil || !errors.As(err, &ue) || !strings.Contains(ue.Msg, "livekit.deployments[meet].allowed_rooms or livekit.deployments[sfu].allowed_rooms") {
		t.Fatalf("refusal: %v", err)
	}
	if asked, _ := other.counts(); asked != 0 {
		t.Errorf("the other deployment was asked about a room nobody allowed")
	}
	// !r may record anything on meet only: the name is not looked for on sfu.
	if _, err := h.be.resolve(context.Background(), asker{room: "!r:example.org"}, "x"); err == nil || !strings.Contains(err.Error(), "(meet)") {
		t.Errorf("a room allowed on meet only: %v", err)
	}
	if asked, _ := other.counts(); asked != 0 {
		t.Errorf("the other deployment was asked about a room nobody allowed there")
	}
}

// A call member chooses the focus, so the JWT service's answer may name any LiveKit room
// on a deployment's SFU: only the room's own call is recorded without a grant.
func TestAccessElementCallOnlyOwnCall(t *testing.T) {
	ec := &fakeEC{
		foci:    []matrixrtc.Transport{{Type: "livekit", ServiceURL: "https://jwt.evil.example"}},
		members: []matrixrtc.Member{{UserID: "@m:evil.example", DeviceID: "D", Identity: "x"}},
		access:  lk.Access{URL: "wss://lk.example.org", Room: "victims-meeting"},
	}
	h := newHarness(t, func(o *Options, d *config.LiveKitDeployment) {
		o.RecordElementCall, o.ElementCall = true, ec
		d.AllowedRooms = nil
	})
	h.api.setRoom("victims-meeting", participant("v", "Victim", mic("TR_v")))
	h.api.setRoom("!r:example.org", participant("a", "A", mic("TR_a")))
	ctx := context.Background()
	if p := h.be.Probe(ctx, "!r:example.org", nil); p.OK || !strings.Contains(p.Reason, "not this room's call") {
		t.Errorf("probe of a call whose JWT service names another room: %+v", p)
	}
	rec, err := startFrom(h, "!r:example.org", "@m:evil.example")
	var ue usererr.Error
	if rec != nil || !errors.As(err, &ue) || !strings.Contains(ue.Msg, "not this room's call") || !strings.Contains(ue.Msg, "livekit.deployments[meet].allowed_rooms") {
		t.Fatalf("another room's call: %v", err)
	}
	if len(h.api.tracks) != 0 {
		t.Fatalf("egresses started for another room: %v", h.api.tracks)
	}
	// An operator may still allow it explicitly.
	h.be.deps[0].AllowedRooms = []config.LiveKitRoomGrant{{MatrixRoom: "!r:example.org", LiveKitRooms: []string{"victims-*"}}}
	if _, err := h.be.resolveElementCall(ctx, asker{room: "!r:example.org"}); err != nil {
		t.Errorf("an explicitly allowed room: %v", err)
	}
	// Legacy JWT services name the LiveKit room after the Matrix room id.
	h.be.deps[0].AllowedRooms = nil
	ec.access.Room = "!r:example.org"
	if _, err := h.be.resolveElementCall(ctx, asker{room: "!r:example.org"}); err != nil {
		t.Errorf("the room's own call under its legacy name: %v", err)
	}
}

// An interrupted recording is taken over only if the config still allows it; if not, its
// egresses are stopped.
func TestAccessRevokedBeforeTakeOver(t *testing.T) {
	h := newHarness(t, nil)
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a1")))
	r := startTracks(t, h, "room1")
	eg := h.api.egressOf(t, "TR_a1")
	r.sync(func() { r.onInfo(h.api.set(eg, livekit.EgressStatus_EGRESS_ACTIVE, nil, "")) })
	r.sync(func() { r.loop.Stop() })
	st, err := readState(r.sess.Folder())
	if err != nil || st.StartedBy != "@u:example.org" {
		t.Fatalf("state: %+v %v", st, err)
	}
	h.be.deps[0].AllowedRooms = nil
	p := &pending{folder: r.sess.Folder(), st: st, found: time.Now()}
	rec, err := h.be.resume(context.Background(), call.StartRequest{RoomID: "!r:example.org"}, p)
	var ue usererr.Error
	if rec != nil || !errors.As(err, &ue) || !strings.Contains(ue.Msg, "livekit.deployments[meet].allowed_rooms") {
		t.Fatalf("take-over of a recording no longer allowed: %v %v", rec, err)
	}
	if h.api.stops() != 1 {
		t.Errorf("%d egresses stopped, want the one left running", h.api.stops())
	}
}

// postWebhook signs and posts an event to the backend.
func postWebhook(t *testing.T, h *harness, ev *livekit.WebhookEvent) int {
	t.Helper()
	body, err := protojson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/livekit/webhook", bytes.NewReader(body))
	req.Header.Set("Authorization", sign(t, "APIkey", testSecret, body))
	w := httptest.NewRecorder()
	h.be.Handler().ServeHTTP(w, req)
	return w.Code
}

// A webhook replayed (same event id), or older than the replay window, is answered but
// not acted on.
func TestWebhookReplayIgnored(t *testing.T) {
	h := newHarness(t, nil)
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a1")))
	r := startTracks(t, h, "room1")
	polls := func() int {
		r.sync(func() {})
		_, p := h.api.counts()
		return p
	}
	ev := func(id string, created time.Time) *livekit.WebhookEvent {
		return &livekit.WebhookEvent{Event: "track_published", Id: id, CreatedAt: created.Unix(), Room: &livekit.Room{Name: "room1"}}
	}
	before := polls()
	if code := postWebhook(t, h, ev("EV_1", time.Now())); code != http.StatusOK {
		t.Fatalf("webhook: %d", code)
	}
	after := polls()
	if after != before+1 {
		t.Fatalf("a webhook about the room did not make the recording look (%d → %d polls)", before, after)
	}
	if code := postWebhook(t, h, ev("EV_1", time.Now())); code != http.StatusOK {
		t.Fatalf("replayed webhook: %d", code)
	}
	if got := polls(); got != after {
		t.Errorf("a replayed webhook was acted on (%d → %d polls)", after, got)
	}
	if code := postWebhook(t, h, ev("EV_old", time.Now().Add(-time.Hour))); code != http.StatusOK {
		t.Fatalf("old webhook: %d", code)
	}
	if got := polls(); got != after {
		t.Errorf("a webhook from an hour ago was acted on (%d → %d polls)", after, got)
	}
	if code := postWebhook(t, h, ev("EV_2", time.Now())); code != http.StatusOK || polls() != after+1 {
		t.Errorf("a new webhook after a replay was not acted on")
	}
}

func TestReplayGuardBounded(t *testing.T) {
	g := newReplayGuard(time.Minute, 3)
	now := time.Now()
	for _, id := range []string{"a", "b", "c"} {
		if !g.first(id, now) {
			t.Fatalf("%s: not first", id)
		}
	}
	if g.first("a", now) {
		t.Error("a replay within the window was taken")
	}
	g.first("d", now) // evicts the oldest
	if len(g.seen) != 3 || len(g.order) != 3 {
		t.Errorf("the guard holds %d ids, max 3", len(g.seen))
	}
	if !g.first("b", now.Add(2*time.Minute)) {
		t.Error("an id is remembered past the window")
	}
}

// readWatch is a body that records whether it was read.
type readWatch struct {
	read bool
	r    *bytes.Reader
}

func (b *readWatch) Read(p []byte) (int, error) { b.read = true; return b.r.Read(p) }

// A request without the signature header or without a length is refused before its body
// is read; an announced body over the cap too.
func TestWebhookRejectedBeforeReading(t *testing.T) {
	h := newHarness(t, nil)
	body, _ := protojson.Marshal(&livekit.WebhookEvent{Event: "room_started", Room: &livekit.Room{Name: "x"}})
	for name, c := range map[string]struct {
		authz  string
		length int64
		want   int
	}{
		"no signature":    {"", int64(len(body)), http.StatusUnauthorized},
		"no length":       {sign(t, "APIkey", testSecret, body), -1, http.StatusLengthRequired},
		"announced large": {sign(t, "APIkey", testSecret, body), maxWebhookBody + 1, http.StatusRequestEntityTooLarge},
	} {
		rb := &readWatch{r: bytes.NewReader(body)}
		req := httptest.NewRequest(http.MethodPost, "/livekit/webhook", rb)
		req.ContentLength = c.length
		if c.authz != "" {
			req.Header.Set("Authorization", c.authz)
		}
		w := httptest.NewRecorder()
		h.be.Handler().ServeHTTP(w, req)
		if w.Code != c.want || rb.read {
			t.Errorf("%s: HTTP %d (want %d), body read: %v", name, w.Code, c.want, rb.read)
		}
	}
	// A body longer than it said is still cut at the cap.
	big := bytes.Repeat([]byte(" "), maxWebhookBody+10)
	req := httptest.NewRequest(http.MethodPost, "/livekit/webhook", bytes.NewReader(big))
	req.ContentLength = 10
	req.Header.Set("Authorization", sign(t, "APIkey", testSecret, big))
	w := httptest.NewRecorder()
	h.be.Handler().ServeHTTP(w, req)
	if w.Code == http.StatusOK {
		t.Errorf("a body over the cap was taken")
	}
}

package egress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/rs/zerolog"
	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/encoding/protojson"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	lk "github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

func TestParseArgs(t *testing.T) {
	for _, c := range []struct {
		args      []string
		ref, mode string
		bad       bool
	}{
		{nil, "", "", false},
		{[]string{"tracks"}, "", "tracks", false},
		{[]string{"https://meet.example.org/abc", "COMPOSITE"}, "https://meet.example.org/abc", "composite", false},
		{[]string{"audio", "room1"}, "room1", "audio", false},
		{[]string{"room1", "room2"}, "", "", true},
		{[]string{strings.Repeat("x", 3000)}, "", "", true},
	} {
		r, err := parseArgs(c.args)
		if (err != nil) != c.bad || r.ref != c.ref || r.mode != c.mode {
			t.Errorf("parseArgs(%q) = %+v, %v", c.args, r, err)
		}
	}
}

func TestWho(t *testing.T) {
	members := map[string]matrixrtc.DeviceKey{"hashedid": {User: "@bob:example.org", Device: "BOBDEV"}}
	for _, c := range []struct {
		identity string
		want     matrixrtc.DeviceKey
	}{
		{"@alice:example.org:DEV1", matrixrtc.DeviceKey{User: "@alice:example.org", Device: "DEV1"}},
		{"@alice:example.org:8448:DEV1", matrixrtc.DeviceKey{User: "@alice:example.org:8448", Device: "DEV1"}},
		{"hashedid", matrixrtc.DeviceKey{User: "@bob:example.org", Device: "BOBDEV"}},
		{"3fa85f64-5717-4562-b3fc-2c963f66afa6", matrixrtc.DeviceKey{User: "3fa85f64-5717-4562-b3fc-2c963f66afa6"}},
		{"@alice", matrixrtc.DeviceKey{User: "@alice"}},
	} {
		if got := who(&livekit.ParticipantInfo{Identity: c.identity}, members); got != c.want {
			t.Errorf("who(%q) = %+v, want %+v", c.identity, got, c.want)
		}
	}
}

func TestCodecOf(t *testing.T) {
	for _, c := range []struct {
		mime string
		kind livekit.TrackType
		ext  string
		ok   bool
	}{
		{"audio/opus", livekit.TrackType_AUDIO, ".ogg", true},
		{"audio/red", livekit.TrackType_AUDIO, ".ogg", true},
		{"video/VP8", livekit.TrackType_VIDEO, ".webm", true},
		{"video/vp9", livekit.TrackType_VIDEO, ".webm", true},
		{"video/H264", livekit.TrackType_VIDEO, ".mp4", true},
		{"video/AV1", livekit.TrackType_VIDEO, "", false},
	} {
		got, ok := codecOf(c.mime, c.kind)
		if ok != c.ok || got.ext != c.ext {
			t.Errorf("codecOf(%s) = %+v, %v", c.mime, got, ok)
		}
	}
}

func TestSameServer(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"wss://lk.example.org", "https://lk.example.org:443/", true},
		{"ws://127.0.0.1:7880", "http://127.0.0.1:7880", true},
		{"wss://lk.example.org", "ws://lk.example.org", false},
		{"wss://lk.example.org", "wss://other.example.org", false},
		{"wss://lk.example.org/sfu", "wss://lk.example.org", false},
	} {
		if got := sameServer(c.a, c.b); got != c.same {
			t.Errorf("sameServer(%s, %s) = %v", c.a, c.b, got)
		}
	}
}

// sign makes a webhook's Authorization as livekit-server does.
func sign(t *testing.T, key, secret string, body []byte) string {
	t.Helper()
	sum := sha256.Sum256(body)
	tok, err := auth.NewAccessToken(key, secret).SetValidFor(time.Minute).SetSha256(base64.StdEncoding.EncodeToString(sum[:])).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestWebhookSignatures(t *testing.T) {
	h := newHarness(t, nil)
	srv := httptest.NewServer(h.be.Handler())
	defer srv.Close()
	body, _ := protojson.Marshal(&livekit.WebhookEvent{Event: "room_started", Room: &livekit.Room{Name: "x"}})
	post := func(authz string, b []byte) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/livekit/webhook", bytes.NewReader(b))
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, c := range map[string]struct {
		authz string
		body  []byte
		want  int
	}{
		"signed":         {sign(t, "APIkey", testSecret, body), body, http.StatusOK},
		"bearer":         {"Bearer " + sign(t, "APIkey", testSecret, body), body, http.StatusOK},
		"unsigned":       {"", body, http.StatusUnauthorized},
		"wrong secret":   {sign(t, "APIkey", testSecret+"x", body), body, http.StatusUnauthorized},
		"unknown key":    {sign(t, "other", testSecret, body), body, http.StatusUnauthorized},
		"changed body":   {sign(t, "APIkey", testSecret, body), append(append([]byte(nil), body...), ' '), http.StatusUnauthorized},
		"garbage":        {"abc.def.ghi", body, http.StatusUnauthorized},
		"signed garbage": {sign(t, "APIkey", testSecret, []byte("{not json")), []byte("{not json"), http.StatusBadRequest},
	} {
		if got := post(c.authz, c.body); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
	resp, err := http.Get(srv.URL + "/livekit/webhook")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
}

func TestResolveMeet(t *testing.T) {
	const uuid = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	meet := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1.0/rooms/weekly-call/":
			_ = json.NewEncoder(w).Encode(map[string]any{"id": uuid, "slug": "weekly-call"})
		case "/api/v1.0/rooms/open-room/": // unregistered: Meet answers with a null id
			_ = json.NewEncoder(w).Encode(map[string]any{"id": nil, "slug": "open-room", "livekit": map[string]string{"room": "open-room"}})
		default:
			http.NotFound(w, r)
		}
	}))
	defer meet.Close()
	h := newHarness(t, func(o *Options, d *config.LiveKitDeployment) { d.MeetURLPrefixes = []string{meet.URL + "/"} })
	h.api.setRoom(uuid, participant("a", "A"))
	h.api.setRoom("open-room", participant("a", "A"))
	h.api.setRoom("a/b+c==", participant("a", "A")) // lk-jwt-service's hashed names are base64
	ctx := context.Background()
	for _, c := range []struct{ ref, room, err string }{
		{meet.URL + "/weekly-call", uuid, ""},
		{meet.URL + "/weekly-call/?x=1", uuid, ""},
		{meet.URL + "/" + uuid, uuid, ""},
		{meet.URL + "/open-room", "open-room", ""},
		{meet.URL + "/nothing-here", "", "Meet has no room"},
		{meet.URL + "/../etc", "", "does not name a Meet room"},
		{"https://elsewhere.example.org/weekly-call", "", "not a Meet room I can record"},
		{"meet/" + uuid, uuid, ""},
		{uuid, uuid, ""},
		{"nope/" + uuid, "", "no LiveKit room called"},
		{"a/b+c==", "a/b+c==", ""},
		{"missing", "", "no LiveKit room called"},
	} {
		tg, err := h.be.resolve(ctx, asker{room: "!r:example.org", by: "@u:example.org"}, c.ref)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: err %v, want %q", c.ref, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.ref, err)
		case c.err == "" && tg.room != c.room:
			t.Errorf("%s: room %q, want %q", c.ref, tg.room, c.room)
		}
	}
}

func startTracks(t *testing.T, h *harness, args ...string) *Recording {
	t.Helper()
	rec, err := h.be.Start(context.Background(), call.StartRequest{RoomID: "!r:example.org", By: "@u:example.org", Args: args})
	if err != nil {
		t.Fatal(err)
	}
	return rec.(*Recording)
}

// A recording in tracks mode follows the room: an egress per track (late ones too), files
// named like native ones, failures told and retried, ends by webhook, and a stop that
// gathers every file.
func TestTracksRecording(t *testing.T) {
	h := newHarness(t, nil)
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a1"), cam("TR_a2", "video/VP8")),
		&livekit.ParticipantInfo{Identity: "EG_x", Kind: livekit.ParticipantInfo_EGRESS})
	r := startTracks(t, h, "room1")
	if p := h.be.Probe(context.Background(), "!r:example.org", []string{"room1"}); !p.OK || p.Priority <= 100 {
		t.Errorf("probe with a room name: %+v", p)
	}
	annMic := h.api.egressOf(t, "TR_a1")
	annCam := h.api.egressOf(t, "TR_a2")
	if annMic == "" || annCam == "" {
		t.Fatalf("egresses: %v", h.api.tracks)
	}
	if s := r.Status().State; s != call.StateConnecting {
		t.Errorf("state before an egress is active: %s", s)
	}
	micReq := h.api.trackReq(annMic)
	folder := r.sess.Folder()
	if got := micReq.GetFile().Filepath; got != filepath.Join(folder, "ann-nodevice-usermedia-audio.ogg") || !micReq.GetFile().DisableManifest {
		t.Fatalf("microphone egress writes to %q", got)
	}
	if got := h.api.trackReq(annCam).GetFile().Filepath; !strings.HasSuffix(got, "ann-nodevice-usermedia-video.webm") {
		t.Fatalf("camera egress writes to %q", got)
	}

	// Active, then Bob joins with a track whose first start fails: the room is told, and
	// the next poll tries again.
	r.sync(func() { r.onInfo(h.api.set(annMic, livekit.EgressStatus_EGRESS_ACTIVE, nil, "")) })
	r.sync(func() { r.onInfo(h.api.set(annCam, livekit.EgressStatus_EGRESS_ACTIVE, nil, "")) })
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a1"), cam("TR_a2", "video/VP8")), participant("bob", "Bob", mic("TR_b1")))
	h.api.startErr["TR_b1"] = twirp.NewError(twirp.Unavailable, "no response from servers")
	r.sync(r.poll)
	n := h.mx.waitNotice(t, "Bob's microphone")
	if !strings.Contains(n, "Egress worker") {
		t.Errorf("start failure notice: %s", n)
	}
	delete(h.api.startErr, "TR_b1")
	r.sync(r.poll)
	bobMic := h.api.egressOf(t, "TR_b1")
	if bobMic == "" {
		t.Fatal("no egress for Bob's track after the retry")
	}
	if got := h.api.trackReq(bobMic).GetFile().Filepath; !strings.HasSuffix(got, "bob-nodevice-usermedia-audio.ogg") {
		t.Fatalf("Bob's egress writes to %q (a failed start must not use up a part number)", got)
	}
	st := r.Status()
	if st.Backend != "egress" || st.Tracks != 3 || len(st.Participants) != 2 || len(st.Details) != 4 || st.State != call.StateConnected {
		t.Errorf("status: %+v", st)
	}

	// Bob's track ends: a signed webhook brings the end, the file is complete.
	r.sync(func() { r.onInfo(h.api.set(bobMic, livekit.EgressStatus_EGRESS_ACTIVE, nil, "")) })
	fi := writeFile(t, h.api.trackReq(bobMic), "bob's audio")
	ended := h.api.set(bobMic, livekit.EgressStatus_EGRESS_COMPLETE, fi, "")
	body, _ := protojson.Marshal(&livekit.WebhookEvent{Event: "egress_ended", EgressInfo: ended})
	req := httptest.NewRequest(http.MethodPost, "/livekit/webhook", bytes.NewReader(body))
	req.Header.Set("Authorization", sign(t, "APIkey", testSecret, body))
	w := httptest.NewRecorder()
	h.be.Handler().ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("webhook: %d", w.Code)
	}
	r.sync(func() {})
	m := r.sess.Manifest()
	var bob recorder.FileEntry
	for _, e := range m.Tracks {
		if e.UserID == "bob" {
			bob = e
		}
	}
	if bob.Status != recorder.StatusComplete || bob.Bytes != int64(len("bob's audio")) || bob.EndReason != "the track ended" || bob.DurationMs != 2000 {
		t.Fatalf("Bob's file after egress_ended: %+v", bob)
	}

	// Stop: every open egress is stopped; the recording ends once Egress reports them.
	stopped := make(chan recorder.Manifest, 1)
	go func() {
		m, err := r.Stop(context.Background(), "stopped by test")
		if err != nil {
			t.Error(err)
		}
		stopped <- m
	}()
	deadline := time.Now().Add(5 * time.Second)
	for h.api.stops() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	fiMic := writeFile(t, micReq, "ann's audio")
	r.sync(func() { r.onInfo(h.api.set(annMic, livekit.EgressStatus_EGRESS_COMPLETE, fiMic, "")) })
	// The camera's egress fails; it is told and the file is kept as interrupted.
	r.sync(func() {
		r.onInfo(h.api.set(annCam, livekit.EgressStatus_EGRESS_FAILED, nil, "pipeline error"))
		r.checkStopped(r.ctx)
	})
	var final recorder.Manifest
	select {
	case final = <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return")
	}
	// The room reads an error id, not Egress's own text (which can name internal hosts).
	if n := h.mx.waitNotice(t, "Ann's camera failed in LiveKit Egress"); strings.Contains(n, "pipeline error") || !strings.Contains(n, "operator's log") {
		t.Errorf("failure notice: %s", n)
	}
	if final.Status != recorder.StatusFinished || len(final.Tracks) != 3 {
		t.Fatalf("final manifest: %+v", final)
	}
	if s := r.Status().State; s != call.StateEnded {
		t.Errorf("state after the stop: %s", s)
	}
	for _, e := range final.Tracks {
		switch e.Source {
		case recorder.SourceCamera:
			if e.Status != recorder.StatusInterrupted || !strings.Contains(e.EndReason, "pipeline error") {
				t.Errorf("failed camera: %+v", e)
			}
		default:
			if e.Status != recorder.StatusComplete {
				t.Errorf("%s: %+v", e.File, e)
			}
		}
	}
	select {
	case <-r.Done():
	default:
		t.Error("Done is not closed after Stop")
	}
}

// An egress aborted before any media leaves nothing behind; a room that empties ends the
// recording by itself.
func TestRecordingEndsWhenTheRoomEmpties(t *testing.T) {
	h := newHarness(t, nil)
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a1")))
	r := startTracks(t, h, "room1", "tracks")
	eg := h.api.egressOf(t, "TR_a1")
	r.sync(func() {
		r.onInfo(h.api.set(eg, livekit.EgressStatus_EGRESS_ABORTED, nil, "Stop called before pipeline could start"))
	})
	if m := r.sess.Manifest(); len(m.Tracks) != 0 {
		t.Fatalf("an aborted egress left %+v", m.Tracks)
	}
	h.api.setRoom("room1")
	r.sync(r.poll)
	time.Sleep(60 * time.Millisecond)
	r.sync(r.poll)
	select {
	case <-r.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the recording did not end when the room emptied")
	}
	_, why, err := r.Result()
	if err != nil || why != "everyone left the LiveKit room" {
		t.Fatalf("Result: %q %v", why, err)
	}
	if h.be.byRoom["meet/room1"] != nil {
		t.Error("the backend still routes the room to the ended recording")
	}
}

// A composite cannot leave one person out; an unusable codec is told, not recorded.
func TestCompositeAndCodecs(t *testing.T) {
	h := newHarness(t, nil)
	h.api.setRoom("room1", participant("ann", "Ann", cam("TR_v", "video/AV1")))
	r := startTracks(t, h, "room1", "audio")
	if len(h.api.composite) != 1 {
		t.Fatalf("composite requests: %v", h.api.composite)
	}
	for _, req := range h.api.composite {
		out := req.FileOutputs[0]
		if !req.AudioOnly || out.FileType != livekit.EncodedFileType_OGG || !strings.HasSuffix(out.Filepath, "/room.ogg") || req.Layout != "speaker" {
			t.Errorf("composite request: %+v", req)
		}
	}
	r.SetOptOut(context.Background(), "@ann:example.org", true)
	h.mx.waitNotice(t, "composite of the whole room")

	h2 := newHarness(t, nil)
	h2.api.setRoom("room1", participant("ann", "Ann", cam("TR_v", "video/AV1")))
	r2 := startTracks(t, h2, "room1")
	r2.sync(r2.poll)
	h2.mx.waitNotice(t, "cannot write video/AV1 tracks")
	if len(h2.api.tracks) != 0 {
		t.Error("an AV1 track egress was started")
	}
}

// Start refuses what it cannot record, in words for the room.
func TestStartRefusals(t *testing.T) {
	h := newHarness(t, nil)
	_, err := h.be.Start(context.Background(), call.StartRequest{RoomID: "!r:example.org", Args: []string{"nosuchroom"}})
	var ue usererr.Error
	if !errors.As(err, &ue) || !strings.Contains(ue.Msg, "no LiveKit room called") {
		t.Fatalf("unknown room: %v", err)
	}
	// Without a room name and without Element Call recording, Probe stays out of the way.
	if p := h.be.Probe(context.Background(), "!r:example.org", nil); p.OK {
		t.Errorf("probe without a room: %+v", p)
	}
	h.api.setRoom("busy", participant("ann", "Ann", mic("TR_1")))
	h.api.startErr["TR_1"] = twirp.NewError(twirp.Unavailable, "no response from servers")
	_, err = h.be.Start(context.Background(), call.StartRequest{RoomID: "!r2:example.org", Args: []string{"busy"}})
	if !errors.As(err, &ue) || !strings.Contains(ue.Msg, "could not start") {
		t.Fatalf("a start every egress refuses: %v", err)
	}
	if len(h.be.active) != 0 || len(h.be.byRoom) != 0 {
		t.Errorf("a failed start stays registered: %v %v", h.be.active, h.be.byRoom)
	}
	_ = id.RoomID("")
}

// The bot dies while Egress records; the next start takes the recording over in the same
// folder: the egress Egress kept running is followed again and its file finished, a
// track published meanwhile gets its own egress.
func TestTakeOverAfterACrash(t *testing.T) {
	h := newHarness(t, nil)
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a1")))
	r := startTracks(t, h, "room1")
	eg := h.api.egressOf(t, "TR_a1")
	r.sync(func() { r.onInfo(h.api.set(eg, livekit.EgressStatus_EGRESS_ACTIVE, nil, "")) })
	folder := r.sess.Folder()
	req := h.api.trackReq(eg)
	// The process dies: nothing is finalised. (The old recording's loop is stopped so it
	// does not race the new one over the same fake server.)
	r.sync(func() { r.loop.Stop() })

	reports, err := recorder.RecoverInterrupted(h.rec.Dir(), zerolog.Nop())
	if err != nil || len(reports) != 1 {
		t.Fatalf("recovery: %v %d", err, len(reports))
	}
	be2 := h.restarted(t)
	if p := be2.Probe(context.Background(), "!r:example.org", nil); !p.OK || p.Priority < 300 {
		t.Fatalf("probe of the interrupted room: %+v", p)
	}
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a1")), participant("bob", "Bob", mic("TR_b1")))
	got, err := be2.Start(context.Background(), call.StartRequest{RoomID: "!r:example.org", Resume: filepath.Base(folder)})
	if err != nil {
		t.Fatal(err)
	}
	r2 := got.(*Recording)
	if r2.sess.Folder() != folder {
		t.Fatalf("resumed in %s, want %s", r2.sess.Folder(), folder)
	}
	if n := len(h.api.tracks); n != 2 {
		t.Fatalf("%d track egresses after the take-over, want Ann's old one and Bob's new one", n)
	}
	fi := writeFile(t, req, "ann's audio, all of it")
	r2.sync(func() { r2.onInfo(h.api.set(eg, livekit.EgressStatus_EGRESS_COMPLETE, fi, "")) })
	bobEg := h.api.egressOf(t, "TR_b1")
	r2.sync(func() {
		r2.onInfo(h.api.set(bobEg, livekit.EgressStatus_EGRESS_ABORTED, nil, "Stop called before pipeline could start"))
	})
	m, err := r2.Stop(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Resumes) != 1 || len(m.Tracks) != 1 {
		t.Fatalf("manifest after the take-over: %d resumes, files %+v", len(m.Resumes), m.Tracks)
	}
	if e := m.Tracks[0]; e.Status != recorder.StatusComplete || e.Part != 1 || e.Bytes != int64(len("ann's audio, all of it")) || e.Writer != "livekit-egress" {
		t.Fatalf("Ann's file after the take-over: %+v", e)
	}
	if p := be2.Probe(context.Background(), "!r:example.org", nil); p.OK {
		t.Error("the interrupted recording can be taken over twice")
	}
}

// fakeEC is the subscriber backend's view of an Element Call call.
type fakeEC struct {
	foci    []matrixrtc.Transport
	members []matrixrtc.Member
	access  lk.Access
}

func (f *fakeEC) CallFoci(context.Context, id.RoomID) ([]matrixrtc.Transport, []matrixrtc.Member, error) {
	return f.foci, f.members, nil
}

func (f *fakeEC) FocusAccess(context.Context, id.RoomID, matrixrtc.Transport) (lk.Access, error) {
	return f.access, nil
}

// Element Call through Egress only when asked, unencrypted, on one SFU that is a
// deployment; identities map to Matrix devices. No grant is needed for a room's own call.
func TestElementCallThroughEgress(t *testing.T) {
	own := matrixrtc.RoomAlias("!r:example.org", matrixrtc.MainSlot)
	ec := &fakeEC{
		foci:    []matrixrtc.Transport{{Type: "livekit", ServiceURL: "https://jwt.example.org"}},
		members: []matrixrtc.Member{{UserID: "@ann:example.org", DeviceID: "ANNDEV", Identity: "h4sh+ed/id"}},
		access:  lk.Access{URL: "wss://lk.example.org:443", Room: own},
	}
	h := newHarness(t, func(o *Options, d *config.LiveKitDeployment) {
		o.RecordElementCall, o.ElementCall = true, ec
		d.AllowedRooms = nil
	})
	ctx := context.Background()
	if p := h.be.Probe(ctx, "!r:example.org", nil); !p.OK || p.Priority <= 100 || p.Priority >= 300 {
		t.Fatalf("probe of an unencrypted call on a deployment: %+v", p)
	}
	tg, err := h.be.resolveElementCall(ctx, asker{room: "!r:example.org"})
	if err != nil || tg.room != own || tg.members["h4sh+ed/id"] != (matrixrtc.DeviceKey{User: "@ann:example.org", Device: "ANNDEV"}) {
		t.Fatalf("target: %+v %v", tg, err)
	}
	h.mx.encrypted = true
	if p := h.be.Probe(ctx, "!r:example.org", nil); p.OK {
		t.Errorf("an encrypted call went to Egress: %+v", p)
	}
	h.mx.encrypted = false
	ec.access.URL = "wss://other.example.org"
	if p := h.be.Probe(ctx, "!r:example.org", nil); p.OK {
		t.Errorf("a call on another SFU went to Egress: %+v", p)
	}
	ec.access.URL = "wss://lk.example.org"
	ec.foci = append(ec.foci, matrixrtc.Transport{Type: "livekit", ServiceURL: "https://jwt2.example.org"})
	if p := h.be.Probe(ctx, "!r:example.org", nil); p.OK {
		t.Errorf("a call over two SFUs went to Egress: %+v", p)
	}
}

// An egress that does not start is told once after start_timeout, unless its track is
// muted (no media, nothing to start on).
func TestLateEgressIsTold(t *testing.T) {
	h := newHarness(t, func(o *Options, d *config.LiveKitDeployment) { d.StartTimeout = config.Duration(10 * time.Millisecond) })
	muted := mic("TR_m")
	muted.Muted = true
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a")), participant("bob", "Bob", muted))
	r := startTracks(t, h, "room1")
	time.Sleep(20 * time.Millisecond)
	r.sync(r.poll)
	h.mx.waitNotice(t, "has not started recording Ann's microphone")
	r.sync(r.poll)
	h.mx.mu.Lock()
	defer h.mx.mu.Unlock()
	if len(h.mx.notices) != 1 {
		t.Errorf("notices: %q (one for Ann, none for Bob's muted track)", h.mx.notices)
	}
}

// fakeStore is storage.s3 as Egress uploads to it; Confirm fails for keys in bad.
type fakeStore struct {
	mu       sync.Mutex
	expected []string
	bad      map[string]bool
}

func (s *fakeStore) Upload(folder, file string) (*livekit.S3Upload, string, error) {
	key := "calls/" + folder + "/" + file
	s.Expect(key)
	return &livekit.S3Upload{Bucket: "b", Endpoint: "http://s3"}, key, nil
}

func (s *fakeStore) Confirm(_ context.Context, _, _, key string, size int64) (recorder.Upload, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bad[key] {
		return recorder.Upload{}, errors.New("the object is not in the bucket")
	}
	return recorder.Upload{Key: key, Bytes: size, Confirmed: "head"}, nil
}

func (s *fakeStore) Expect(key string) {
	s.mu.Lock()
	s.expected = append(s.expected, key)
	s.mu.Unlock()
}

// Egress's own time limit ends a file and the track goes on in a new part; an upload that
// cannot be confirmed is told and the file is not counted as saved.
func TestLimitReachedAndUploadFailure(t *testing.T) {
	store := &fakeStore{bad: map[string]bool{}}
	h := newHarness(t, func(o *Options, d *config.LiveKitDeployment) { o.Store, d.Output = store, config.OutputS3 })
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a")), participant("bob", "Bob", mic("TR_b")))
	r := startTracks(t, h, "room1")
	annEg, bobEg := h.api.egressOf(t, "TR_a"), h.api.egressOf(t, "TR_b")
	annReq := h.api.trackReq(annEg)
	if annReq.GetFile().GetS3() == nil || !strings.HasPrefix(annReq.GetFile().Filepath, "calls/") {
		t.Fatalf("remote output: %+v", annReq.GetFile())
	}
	store.bad[h.api.trackReq(bobEg).GetFile().Filepath] = true
	fi := &livekit.FileInfo{Size: 1000, Duration: int64(time.Minute), StartedAt: time.Now().UnixNano()}
	r.sync(func() {
		r.onInfo(h.api.set(annEg, livekit.EgressStatus_EGRESS_ACTIVE, nil, ""))
		r.onInfo(h.api.set(annEg, livekit.EgressStatus_EGRESS_LIMIT_REACHED, fi, ""))
		r.onInfo(h.api.set(bobEg, livekit.EgressStatus_EGRESS_ACTIVE, nil, ""))
		r.onInfo(h.api.set(bobEg, livekit.EgressStatus_EGRESS_COMPLETE, fi, ""))
	})
	h.mx.waitNotice(t, "reached its own time limit")
	n := h.mx.waitNotice(t, "Bob's microphone, but its upload")
	if strings.Contains(n, "not in the bucket") || !strings.Contains(n, "operator's log") {
		t.Errorf("upload failure notice: %s", n)
	}
	r.sync(r.poll)
	next := h.api.egressOf(t, "TR_a")
	if next == "" || next == annEg || !strings.HasSuffix(h.api.trackReq(next).GetFile().Filepath, "ann-nodevice-usermedia-audio.part2.ogg") {
		t.Fatalf("Ann's track does not go on in part 2 after the limit: %q", next)
	}
	m := r.sess.Manifest()
	seen := 0
	for _, e := range m.Tracks {
		switch e.File {
		case "ann-nodevice-usermedia-audio.ogg":
			seen++
			if e.Status != recorder.StatusComplete || e.Upload == nil || e.EndReason != "LiveKit Egress's time limit" {
				t.Errorf("Ann's first part: %+v", e)
			}
		case "bob-nodevice-usermedia-audio.ogg":
			seen++
			if e.Status != recorder.StatusInterrupted || e.Upload != nil {
				t.Errorf("Bob's unconfirmed upload: %+v", e)
			}
		}
	}
	if seen != 2 {
		t.Errorf("the manifest lacks Ann's first part or Bob's file: %+v", m.Tracks)
	}
	if len(store.expected) < 3 {
		t.Errorf("expected keys: %v", store.expected)
	}
}

// Everyone opting out leaves the recording connected (call.RecordingState), as in mesh and
// LiveKit: their egresses stop, but nothing is wrong.
func TestEveryoneOptedOutIsConnected(t *testing.T) {
	h := newHarness(t, nil)
	h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a1")))
	r := startTracks(t, h, "room1")
	annMic := h.api.egressOf(t, "TR_a1")
	r.sync(func() { r.onInfo(h.api.set(annMic, livekit.EgressStatus_EGRESS_ACTIVE, nil, "")) })
	if s := r.Status().State; s != call.StateConnected {
		t.Fatalf("state while Ann is recorded: %s", s)
	}
	r.SetOptOut(context.Background(), "ann", true)
	r.sync(func() {})
	if n := h.api.stops(); n != 1 {
		t.Fatalf("%d egresses stopped after Ann opted out, want 1", n)
	}
	fi := writeFile(t, h.api.trackReq(annMic), "ann's audio")
	r.sync(func() { r.onInfo(h.api.set(annMic, livekit.EgressStatus_EGRESS_COMPLETE, fi, "")) })
	st := r.Status()
	if st.Tracks != 0 || len(st.Participants) != 1 || !st.Participants[0].OptedOut || st.State != call.StateConnected {
		t.Errorf("status with everyone opted out: %+v", st)
	}
}

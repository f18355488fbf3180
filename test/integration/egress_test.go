package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/minio/minio-go/v7"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protojson"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/devegress"
	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/internal/devjwt"
	"github.com/matrix-recorder/matrix-recorder/internal/devlivekit"
	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
	"github.com/matrix-recorder/matrix-recorder/internal/lkpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// egressEnv is a LiveKit deployment as an operator runs it for La Suite Meet: Redis,
// livekit-server sending its webhooks to the bot's HTTP port, and LiveKit Egress (v1.8.6,
// built by internal/devtools); plus a stand-in for Meet's room API (Meet itself does not
// run here), which turns a room's slug into its LiveKit room name.
type egressEnv struct {
	lk       *devlivekit.Server
	eg       *devegress.Server
	httpPort int
	meet     string // Meet's base URL
	meetRoom string // the LiveKit room the Meet room "abc-defg-hij" meets in
}

// egressS3Setup starts a homeserver, the S3 server (with the event webhook) and the Egress
// environment, and returns a bot config that uploads there and knows the deployment.
func egressS3Setup(t *testing.T) (*devhs.Server, *s3Env, *egressEnv, config.Config) {
	t.Helper()
	s := homeserver(t)
	s3 := startS3(t, true)
	env := startEgressEnv(t, s3.httpPort)
	cfg := botConfig(t, s)
	s3.apply(&cfg)
	cfg.LiveKit.Deployments = []config.LiveKitDeployment{env.deployment(config.OutputAuto)}
	return s, s3, env, cfg
}

func startEgressEnv(t *testing.T, httpPort int) *egressEnv {
	t.Helper()
	testenv.RequireIntegration(t)
	mediacheck.Require(t, mediacheck.FFprobe, mediacheck.FFmpeg)
	ctx := timeout(t, 10*time.Minute)
	log := testLogger(t).With().Str("side", "livekit").Logger().Level(zerolog.WarnLevel)
	env := &egressEnv{httpPort: httpPort, meetRoom: "7c9e6679-7425-40de-944b-e07fc1f90ae7"}
	redis, err := devegress.StartRedis(ctx, t.TempDir())
	if err != nil {
		testenv.SkipOrFail(t, "redis: %v", err)
	}
	t.Cleanup(func() { _ = redis.Stop() })
	env.lk, err = devlivekit.Start(ctx, devlivekit.Options{
		Dir: t.TempDir(), Redis: redis.Addr(), Logger: &log,
		WebhookURLs: []string{fmt.Sprintf("http://127.0.0.1:%d/livekit/webhook", httpPort)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.lk.Stop() })
	testenv.LogOnFailure(t, "livekit-server", func() string { return env.lk.LogTail(6000) })
	env.eg, err = devegress.Start(ctx, devegress.Options{
		Dir: t.TempDir(), LiveKitURL: env.lk.URL(), APIKey: env.lk.APIKey(), APISecret: env.lk.APISecret(),
		Redis: redis.Addr(), Logger: &log,
	})
	if err != nil {
		testenv.SkipOrFail(t, "LiveKit Egress: %v", err)
	}
	t.Cleanup(func() { _ = env.eg.Stop() })
	testenv.LogOnFailure(t, "egress", func() string { return env.eg.LogTail(12000) })

	// Meet's API answers GET /api/v1.0/rooms/<slug>/ with the room (its id is the LiveKit
	// room's name).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1.0/rooms/abc-defg-hij/" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": env.meetRoom, "slug": "abc-defg-hij", "name": "Weekly", "is_administrable": false})
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	env.meet = "http://" + ln.Addr().String() + "/"
	return env
}

// deployment is the bot's config entry for the environment's server.
func (env *egressEnv) deployment(output string) config.LiveKitDeployment {
	d := config.DefaultLiveKitDeployment()
	d.Name, d.URL, d.APIKey, d.APISecret = "meet", env.lk.URL(), env.lk.APIKey(), env.lk.APISecret()
	d.MeetURLPrefixes = []string{env.meet}
	d.Output = output
	// Long: new tracks and the ends of egresses must reach the bot through the webhooks.
	d.PollInterval = config.Duration(time.Minute)
	return d
}

// participant joins a LiveKit room as Meet's clients do (a token from Meet's backend).
func (env *egressEnv) participant(t *testing.T, room, identity, name string) *lkpeer.Peer {
	t.Helper()
	tok, err := auth.NewAccessToken(env.lk.APIKey(), env.lk.APISecret()).SetIdentity(identity).SetName(name).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: room}).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	p, err := lkpeer.Direct(timeout(t, time.Minute), env.lk.URL(), tok, testLogger(t).With().Str("side", identity).Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Disconnect() })
	return p
}

// egressRoom is a room with a caller and the bot.
func egressRoom(t *testing.T, c *caller.Client, bot id.UserID) id.RoomID {
	t.Helper()
	room, err := c.CreateDM(timeout(t, time.Minute), bot, false)
	if err != nil {
		t.Fatal(err)
	}
	return room
}

// egressAliasRoom is a room with a caller and the bot, published under an alias (the
// alias's local part) in the homeserver's directory.
func egressAliasRoom(t *testing.T, c *caller.Client, bot id.UserID, alias string) id.RoomID {
	t.Helper()
	ctx := timeout(t, time.Minute)
	resp, err := c.Matrix().CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomAliasName: alias, Invite: []id.UserID{bot}})
	if err != nil {
		t.Fatalf("create a room with alias %s: %v", alias, err)
	}
	if err := c.WaitMembership(ctx, resp.RoomID, bot, event.MembershipJoin); err != nil {
		t.Fatal(err)
	}
	return resp.RoomID
}

func say(t *testing.T, c *caller.Client, room id.RoomID, text string) time.Time {
	t.Helper()
	at := time.Now()
	if err := c.SendMessage(timeout(t, 30*time.Second), room, text); err != nil {
		t.Fatal(err)
	}
	return at
}

// egressFile returns the one file of an identity's source.
func egressFile(t *testing.T, m *recorder.Manifest, user, source string) recorder.FileEntry {
	t.Helper()
	var found []recorder.FileEntry
	for _, f := range m.Tracks {
		if f.UserID == user && f.Source == source {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s file of %s:\n%s", source, user, describe(m))
	}
	return found[0]
}

// checkEgressAudio checks an Egress Opus file: tools accept it, and it carries the sender's
// tone for the length Egress reported. Egress pads the end of an audio file with silence
// up to its stop time plus the sender-report offset it measured, so the file may run a few
// seconds longer than the media.
func checkEgressAudio(t *testing.T, path string, f recorder.FileEntry, hz, other float64) {
	t.Helper()
	ctx := timeout(t, time.Minute)
	info, err := mediacheck.Probe(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Duration(f.DurationMs) * time.Millisecond
	if len(info.Streams) != 1 || info.Streams[0].CodecName != "opus" || info.Duration < want*95/100 || info.Duration > want+8*time.Second {
		t.Errorf("%s: %+v, want one opus stream of about %v", f.File, info, want)
	}
	if _, err := mediacheck.OpusInfo(ctx, path); err != nil {
		t.Errorf("%s: opusinfo: %v", f.File, err)
	}
	pcm, err := mediacheck.DecodePCM(ctx, path, pcmRate)
	if err != nil {
		t.Fatal(err)
	}
	wins := mediacheck.Windows(pcm, pcmRate, 500*time.Millisecond)
	n := int(want/(500*time.Millisecond)) - 1
	if n < 4 || n > len(wins) {
		t.Fatalf("%s: %d half seconds decoded for %v of media", f.File, len(wins), want)
	}
	quiet := 0
	for i, w := range wins[:n] {
		a, b := mediacheck.ToneLevel(w, pcmRate, hz), mediacheck.ToneLevel(w, pcmRate, other)
		if a < 0.02 || a < 5*b {
			quiet++
			t.Logf("%s: at %v the %v Hz tone is at %.4f (%v Hz at %.4f)", f.File, time.Duration(i)*500*time.Millisecond, hz, a, other, b)
		}
	}
	if quiet > 1 {
		t.Errorf("%s: %d of %d half seconds lack the %v Hz tone", f.File, quiet, n, hz)
	}
}

func checkEgressVideo(t *testing.T, path string, f recorder.FileEntry) {
	t.Helper()
	ctx := timeout(t, time.Minute)
	info, err := mediacheck.Probe(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Streams) != 1 || info.Streams[0].CodecName != "vp8" || info.Streams[0].Width != 320 || info.Streams[0].Height != 240 {
		t.Errorf("%s: streams %+v, want one 320x240 vp8 stream", f.File, info.Streams)
	}
	if errs, err := mediacheck.DecodeErrors(ctx, path); err != nil || errs != "" {
		t.Errorf("%s: ffmpeg decode errors: %v %s", f.File, err, errs)
	}
	matchTestPattern(t, path, testmedia.VP8, 10)
}

// download fetches an object into dir.
func download(t *testing.T, e *s3Env, key, dir string) string {
	t.Helper()
	c, err := e.srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.Base(key))
	if err := c.FGetObject(timeout(t, time.Minute), e.bucket, key, path, minio.GetObjectOptions{}); err != nil {
		t.Fatalf("download %s: %v", key, err)
	}
	return path
}

// A La Suite Meet room recorded multitrack with LiveKit Egress into the operator's S3:
// one file per published track, a track published later included, on one timeline,
// linked in the Matrix room; the end of a track comes through LiveKit's signed webhook,
// and forged webhooks are refused.
func TestIntegrationEgressMeetTracks(t *testing.T) {
	s, s3, env, cfg := egressS3Setup(t)
	alice := newCaller(t, s, "alice")
	// Alice may record any room of the deployment, from any Matrix room.
	cfg.LiveKit.Deployments[0].AllowedUsers = []string{string(alice.UserID())}
	rb := startBot(t, cfg)
	room := egressRoom(t, alice, rb.bot.UserID())

	// Two people in the Meet room: Ann with microphone and camera; Bob joins later.
	ann := env.participant(t, env.meetRoom, "ann-identity", "Ann")
	mustPublish(t, ann, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	mustPublish(t, ann, testmedia.VP8, livekit.TrackSource_CAMERA)
	time.Sleep(time.Second)

	since := say(t, alice, room, "!start "+env.meet+"abc-defg-hij tracks")
	start := waitNotice(t, alice, room, since, 90*time.Second, "Recording started")
	t.Logf("start notice: %s", start)
	time.Sleep(3 * time.Second)

	bob := env.participant(t, env.meetRoom, "bob-identity", "Bob")
	bobMic := mustPublish(t, bob, testmedia.Tone660, livekit.TrackSource_MICROPHONE)
	bobStarted := time.Now()

	// Bob's track is found through the track_published webhook (the bot polls once a
	// minute here), and its egress becomes active.
	deadline := time.Now().Add(45 * time.Second)
	for {
		since = say(t, alice, room, "!status")
		st := waitNotice(t, alice, room, since, 30*time.Second, "LiveKit Egress on meet")
		if strings.Count(st, "  active  track") >= 3 {
			t.Logf("status:\n%s", st)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("three active track egresses expected in:\n%s", st)
		}
		time.Sleep(2 * time.Second)
	}
	time.Sleep(5 * time.Second)

	// Bob stops his microphone: its egress ends, and the bot hears of it by webhook.
	if err := bobMic.Stop(); err != nil {
		t.Logf("stop bob's microphone: %v", err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		since = say(t, alice, room, "!status")
		st := waitNotice(t, alice, room, since, 30*time.Second, "LiveKit Egress on meet")
		if strings.Contains(st, "  complete  track  Bob's microphone") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Bob's egress did not complete after his track ended:\n%s", st)
		}
		time.Sleep(2 * time.Second)
	}

	// Forged webhooks get 401: unsigned, signed with another secret, and a signed body
	// that was changed.
	forgeWebhooks(t, s3.httpPort, env.lk.APIKey(), env.lk.APISecret())

	since = say(t, alice, room, "!stop")
	summary := waitNotice(t, alice, room, since, 2*time.Minute, "Recording saved")
	t.Logf("summary:\n%s", summary)
	folder, m := finishedFolder(t, rb)
	keepOnFailure(t, folder)
	t.Logf("files:\n%s", describe(m))
	if m.Kind != "egress" {
		t.Fatalf("recorded by %q, want egress", m.Kind)
	}
	annMic := egressFile(t, m, "ann-identity", recorder.SourceMicrophone)
	annCam := egressFile(t, m, "ann-identity", recorder.SourceCamera)
	bobF := egressFile(t, m, "bob-identity", recorder.SourceMicrophone)
	if annMic.File != "ann-identity-nodevice-usermedia-audio.ogg" || annCam.File != "ann-identity-nodevice-usermedia-video.webm" || bobF.File != "bob-identity-nodevice-usermedia-audio.ogg" {
		t.Errorf("files not named as native recordings are: %s, %s, %s", annMic.File, annCam.File, bobF.File)
	}
	if bobF.EndReason != "the track ended" || annMic.EndReason != "recording stopped" {
		t.Errorf("end reasons: bob %q, ann %q", bobF.EndReason, annMic.EndReason)
	}
	// One timeline: Bob's file starts where he started publishing, Ann's near the start.
	if got, want := time.Duration(bobF.StartOffsetMs)*time.Millisecond, bobStarted.Sub(m.StartedAt); got < want-time.Second || got > want+3*time.Second {
		t.Errorf("Bob's file starts at %v on the timeline; he started publishing at %v", got, want)
	}
	if annMic.StartOffsetMs > 3000 {
		t.Errorf("Ann's microphone starts at %d ms; it was published before the start", annMic.StartOffsetMs)
	}
	dir := t.TempDir()
	webhooked := 0
	for _, f := range []recorder.FileEntry{annMic, annCam, bobF} {
		if f.Status != recorder.StatusComplete || f.Upload == nil || f.Upload.Key != "calls/"+filepath.Base(folder)+"/"+f.File || f.Bytes <= 0 {
			t.Fatalf("%s: %+v (upload %+v)", f.File, f, f.Upload)
		}
		if strings.Contains(f.Upload.Confirmed, "webhook") {
			webhooked++
		}
		if _, err := os.Stat(filepath.Join(folder, f.File)); err == nil {
			t.Errorf("%s: Egress uploaded it, yet a local copy exists", f.File)
		}
		if !strings.Contains(summary, f.File) {
			t.Errorf("the summary does not link %s", f.File)
		}
	}
	if webhooked == 0 {
		t.Errorf("no upload was confirmed by the S3 server's notification")
	}
	checkEgressAudio(t, download(t, s3, annMic.Upload.Key, dir), annMic, 440, 660)
	checkEgressVideo(t, download(t, s3, annCam.Upload.Key, dir), annCam)
	checkEgressAudio(t, download(t, s3, bobF.Upload.Key, dir), bobF, 660, 440)
	// The links work: presigned URLs in the summary download the files.
	for _, u := range links(summary) {
		if code, _ := fetch(t, u); code != http.StatusOK {
			t.Errorf("GET %s: %d", u, code)
		}
	}
	keys := s3.keys(t, "calls/"+filepath.Base(folder)+"/")
	if len(keys) != 4 { // three files and the manifest
		t.Errorf("objects in the bucket: %v", keys)
	}
}

// forgeWebhooks posts webhooks the bot must refuse.
func forgeWebhooks(t *testing.T, port int, key, secret string) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/livekit/webhook", port)
	ev := &livekit.WebhookEvent{Event: "egress_ended", Id: "EV_forged", CreatedAt: time.Now().Unix(),
		EgressInfo: &livekit.EgressInfo{EgressId: "EG_forged", Status: livekit.EgressStatus_EGRESS_FAILED, Error: "forged"}}
	body, err := protojson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(key, secret string, body []byte) string {
		at := auth.NewAccessToken(key, secret).SetValidFor(5 * time.Minute)
		at.SetSha256(webhookChecksum(body))
		tok, err := at.ToJWT()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	post := func(name, authz string, body []byte) int {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/webhook+json")
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	changed := bytes.Replace(body, []byte("forged"), []byte("Forged"), 1)
	for _, c := range []struct {
		name, authz string
		body        []byte
		want        int
	}{
		{"unsigned", "", body, http.StatusUnauthorized},
		{"another secret", sign(key, secret+"x", body), body, http.StatusUnauthorized},
		{"another key", sign("otherkey", secret, body), body, http.StatusUnauthorized},
		{"changed body", sign(key, secret, body), changed, http.StatusUnauthorized},
		{"garbage token", "Bearer not-a-jwt", body, http.StatusUnauthorized},
		{"signed", sign(key, secret, body), body, http.StatusOK},
	} {
		if got := post(c.name, c.authz, c.body); got != c.want {
			t.Errorf("webhook %s: HTTP %d, want %d", c.name, got, c.want)
		}
	}
	if got := post("GET", "", nil); got == http.StatusOK {
		t.Error("a webhook without a body was accepted")
	}
}

// Egress writing into the call folder (it shares the filesystem), a recording that ends at
// recordings.max_duration, and failures reported in the room: a room composite cannot run
// here (Egress needs Chrome, Xvfb and PulseAudio for it), and an unknown room is refused.
func TestIntegrationEgressLocalAndFailures(t *testing.T) {
	port, err := devtools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := homeserver(t)
	env := startEgressEnv(t, port)
	cfg := botConfig(t, s)
	cfg.HTTP = config.HTTP{Listen: "127.0.0.1:" + strconv.Itoa(port)}
	cfg.Recordings.MaxDuration = config.Duration(12 * time.Second)
	d := env.deployment(config.OutputLocal)
	d.PollInterval = config.Duration(2 * time.Second)
	alias := uniq("egress-local")
	d.AllowedRooms = []config.LiveKitRoomGrant{{MatrixRoom: "#" + alias + ":" + s.ServerName(), LiveKitRooms: []string{"local-room", "no-such-*"}}}
	cfg.LiveKit.Deployments = []config.LiveKitDeployment{d}
	rb := startBot(t, cfg)
	alice := newCaller(t, s, "alice")
	room := egressAliasRoom(t, alice, rb.bot.UserID(), alias)

	since := say(t, alice, room, "!start meet/no-such-room")
	n := waitNotice(t, alice, room, since, 60*time.Second, "no-such-room")
	if !strings.Contains(n, "no LiveKit room") {
		t.Errorf("unknown room: %s", n)
	}

	ann := env.participant(t, "local-room", "ann", "Ann")
	mustPublish(t, ann, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	time.Sleep(time.Second)

	since = say(t, alice, room, "!start local-room composite")
	n = waitNotice(t, alice, room, since, 90*time.Second, "LiveKit Egress")
	t.Logf("composite: %s", n)
	if !strings.Contains(n, "could not start") && !strings.Contains(n, "failed") && !strings.Contains(n, "gave up") {
		t.Errorf("the composite's failure is not reported: %s", n)
	}
	// Whatever the composite did, it ends; then a track recording runs to max_duration.
	waitIdle(t, alice, room)

	since = say(t, alice, room, "!start local-room")
	waitNotice(t, alice, room, since, 90*time.Second, "Recording started")
	summary := waitNotice(t, alice, room, since, 2*time.Minute, "Recording saved")
	if !strings.Contains(summary, "maximum recording length") {
		t.Errorf("the summary does not say the limit ended it:\n%s", summary)
	}
	folder, m := lastFolder(t, rb.cfg.Recordings.Dir)
	keepOnFailure(t, folder)
	f := egressFile(t, m, "ann", recorder.SourceMicrophone)
	if f.Status != recorder.StatusComplete || f.Upload != nil || f.SHA256 == "" {
		t.Fatalf("local file: %+v", f)
	}
	checkEgressAudio(t, filepath.Join(folder, f.File), f, 440, 660)
}

// waitIdle waits until !status says nothing is recorded.
func waitIdle(t *testing.T, c *caller.Client, room id.RoomID) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		since := say(t, c, room, "!status")
		n, err := c.WaitNotice(timeout(t, 30*time.Second), room, since, func(b string) bool { return true })
		if err == nil && !strings.Contains(n.Body, "Recording (") {
			return
		}
		time.Sleep(2 * time.Second)
	}
	t.Fatal("the room is still being recorded")
}

// lastFolder returns the newest finished call folder.
func lastFolder(t *testing.T, dir string) (string, *recorder.Manifest) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir(dir)
		var newest string
		for _, e := range entries {
			if e.IsDir() && e.Name() > newest {
				newest = e.Name()
			}
		}
		if newest != "" {
			m, err := recorder.ReadManifest(filepath.Join(dir, newest))
			if err == nil && m.Status == recorder.StatusFinished {
				return filepath.Join(dir, newest), m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished call folder in %s", dir)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// webhookChecksum is the sha256 claim LiveKit puts in a webhook's token.
func webhookChecksum(body []byte) string {
	sum := sha256.Sum256(body)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Element Call through Egress, as an operator may ask (livekit.record_element_call_with_egress):
// an unencrypted call on a deployment's SFU is recorded with Egress, its files named after
// the members' Matrix users and devices; an encrypted call is still recorded by the
// subscriber, which can decrypt.
func TestIntegrationEgressElementCall(t *testing.T) {
	testenv.RequireIntegration(t)
	mediacheck.Require(t, mediacheck.FFprobe, mediacheck.FFmpeg)
	ctx := timeout(t, 10*time.Minute)
	log := testLogger(t).With().Str("side", "infra").Logger().Level(zerolog.WarnLevel)
	hsF, err := devhs.Start(ctx, devhs.Options{Federation: true, Logger: &log})
	if err != nil {
		t.Fatalf("start dendrite: %v", err)
	}
	t.Cleanup(func() { _ = hsF.Stop() })
	port, err := devtools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	env := startEgressEnv(t, port)
	jwt, err := devjwt.Start(devjwt.Options{
		LiveKitURL: env.lk.URL(), LiveKitHTTPURL: env.lk.HTTPURL(), APIKey: env.lk.APIKey(), APISecret: env.lk.APISecret(),
		Homeservers: map[string]string{hsF.ServerName(): hsF.URL()}, Logger: testLogger(t).With().Str("side", "jwt").Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jwt.Close() })
	lke := &lkEnv{hs: hsF, sfu1: env.lk, jwt: jwt}

	cfg := lke.botConfig(t)
	cfg.HTTP = config.HTTP{Listen: "127.0.0.1:" + strconv.Itoa(port)}
	d := env.deployment(config.OutputLocal)
	d.Name, d.MeetURLPrefixes = "sfu", nil
	cfg.LiveKit.Deployments = []config.LiveKitDeployment{d}
	cfg.LiveKit.RecordElementCallWithEgress = true
	rb := startBot(t, cfg)

	alice := lke.peer(t, "alice", lkpeer.Options{})
	room := callRoom(t, alice, false, rb.bot.UserID())
	if err := alice.Join(ctx, room); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, alice, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	since := send(t, alice, room, "!start")
	waitMessage(t, alice, room, since, 90*time.Second, "Recording started")
	since = send(t, alice, room, "!status")
	st := waitMessage(t, alice, room, since, 30*time.Second, "Recording (")
	if !strings.Contains(st, "Recording (egress)") || !strings.Contains(st, "Element Call call") {
		t.Errorf("an unencrypted Element Call call on a deployment is not recorded with Egress:\n%s", st)
	}
	time.Sleep(6 * time.Second)
	since = send(t, alice, room, "!stop")
	waitMessage(t, alice, room, since, 2*time.Minute, "Recording saved")
	folder, m := lastFolder(t, cfg.Recordings.Dir)
	keepOnFailure(t, folder)
	f := egressFile(t, m, string(alice.UserID()), recorder.SourceMicrophone)
	if f.DeviceID != string(alice.DeviceID()) || f.File != recorder.UserName(string(alice.UserID()))+"-"+recorder.Sanitize(string(alice.DeviceID()))+"-usermedia-audio.ogg" {
		t.Errorf("the file is not named after the member's Matrix device: %+v", f)
	}
	checkEgressAudio(t, filepath.Join(folder, f.File), f, 440, 660)

	// Encrypted: Egress would write ciphertext, so the subscriber records it.
	bob := lke.peer(t, "bob", lkpeer.Options{Encrypt: true})
	eroom := callRoom(t, bob, true, rb.bot.UserID())
	if err := bob.Join(ctx, eroom); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, bob, testmedia.Tone660, livekit.TrackSource_MICROPHONE)
	since = send(t, bob, eroom, "!start")
	waitMessage(t, bob, eroom, since, 90*time.Second, "Recording started")
	since = send(t, bob, eroom, "!status")
	st = waitMessage(t, bob, eroom, since, 30*time.Second, "Recording (")
	if !strings.Contains(st, "Recording (livekit)") {
		t.Errorf("an encrypted call is not recorded by the subscriber:\n%s", st)
	}
	since = send(t, bob, eroom, "!stop")
	waitMessage(t, bob, eroom, since, 2*time.Minute, "Recording saved")
}

// The real binary, SIGKILLed while Egress records a Meet room into S3, and started again:
// Egress never stopped, the bot takes its egress over in the same folder, and after !stop
// the room gets the link to one file that covers the whole time, the downtime included.
func TestIntegrationEgressTakeOverAfterKill(t *testing.T) {
	s, s3, env, cfg := egressS3Setup(t)
	alias := uniq("egress-takeover")
	cfg.LiveKit.Deployments[0].AllowedRooms = []config.LiveKitRoomGrant{{MatrixRoom: "#" + alias + ":" + s.ServerName(), LiveKitRooms: []string{"abc-defg-hij"}}}
	p := startProcess(t, cfg)
	alice := newCaller(t, s, "alice")
	room := egressAliasRoom(t, alice, id.UserID(cfg.Matrix.UserID), alias)

	ann := env.participant(t, env.meetRoom, "ann-identity", "Ann")
	mustPublish(t, ann, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	time.Sleep(time.Second)
	since := say(t, alice, room, "!start "+env.meet+"abc-defg-hij")
	waitNotice(t, alice, room, since, 90*time.Second, "Recording started")
	started := time.Now()
	time.Sleep(4 * time.Second)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	time.Sleep(3 * time.Second) // Egress records on while the bot is down

	restarted := time.Now()
	startProcess(t, cfg)
	n := waitNotice(t, alice, room, restarted, 90*time.Second, "recording again, in the same folder")
	t.Logf("notice: %s", n)
	time.Sleep(3 * time.Second)
	since = say(t, alice, room, "!stop")
	stopped := since
	summary := waitNotice(t, alice, room, since, 2*time.Minute, "Recording saved")
	t.Logf("summary:\n%s", summary)
	folder, m := finishedFolderIn(t, cfg.Recordings.Dir)
	keepOnFailure(t, folder)
	t.Logf("files:\n%s", describe(m))
	if len(m.Resumes) != 1 {
		t.Errorf("manifest resumes: %+v", m.Resumes)
	}
	f := egressFile(t, m, "ann-identity", recorder.SourceMicrophone)
	if f.Part != 1 || f.Status != recorder.StatusComplete || f.Upload == nil || f.Writer != "livekit-egress" || !strings.Contains(f.Upload.Confirmed, "webhook") {
		t.Fatalf("Ann's file: %+v", f)
	}
	// One file from the start to the stop: Egress did not stop while the bot was down.
	if got, want := time.Duration(f.DurationMs)*time.Millisecond, stopped.Sub(started); got < want-3*time.Second {
		t.Errorf("Ann's file holds %v; the recording ran %v", got, want)
	}
	if !strings.Contains(summary, f.File) {
		t.Errorf("the summary does not link %s", f.File)
	}
	checkEgressAudio(t, download(t, s3, f.Upload.Key, t.TempDir()), f, 440, 660)
}

// Who may record what, through the real binary: with the deployment's default of nothing,
// a !start from a Matrix room that allowed_rooms does not list is refused in every form (a
// LiveKit room name, deployment/room, a Meet URL) with a notice naming the key, and no
// egress is started (the LiveKit server lists none); the room the config lists through
// its alias records the rooms its pattern matches and nothing else, and !stop and !status
// elsewhere do not touch its recording. Forged and replayed webhooks change nothing.
func TestIntegrationEgressAllowList(t *testing.T) {
	port, err := devtools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := homeserver(t)
	env := startEgressEnv(t, port)
	cfg := botConfig(t, s)
	cfg.HTTP = config.HTTP{Listen: "127.0.0.1:" + strconv.Itoa(port)}
	d := env.deployment(config.OutputLocal)
	d.PollInterval = config.Duration(2 * time.Second)
	alias := uniq("egress-team")
	d.AllowedRooms = []config.LiveKitRoomGrant{{MatrixRoom: "#" + alias + ":" + s.ServerName(), LiveKitRooms: []string{"team-*"}}}
	cfg.LiveKit.Deployments = []config.LiveKitDeployment{d}
	p := startProcess(t, cfg)
	bot := id.UserID(cfg.Matrix.UserID)

	alice := newCaller(t, s, "alice")
	listed := egressAliasRoom(t, alice, bot, alias)
	mallory := newCaller(t, s, "mallory")
	unlisted := egressRoom(t, mallory, bot)

	ann := env.participant(t, "team-call", "ann", "Ann")
	mustPublish(t, ann, testmedia.Tone440, livekit.TrackSource_MICROPHONE)
	meetAnn := env.participant(t, env.meetRoom, "meet-ann", "Ann")
	mustPublish(t, meetAnn, testmedia.Tone660, livekit.TrackSource_MICROPHONE)
	time.Sleep(time.Second)

	key := "livekit.deployments[meet].allowed_rooms"
	for _, ref := range []string{"team-call", "meet/team-call", env.meet + "abc-defg-hij"} {
		since := say(t, mallory, unlisted, "!start "+ref)
		n := waitNotice(t, mallory, unlisted, since, 60*time.Second, "may not record")
		if !strings.Contains(n, key) || !strings.Contains(n, string(unlisted)) {
			t.Errorf("!start %s from an unlisted room: the refusal does not name %s and the room id: %s", ref, key, n)
		}
	}
	// The bot would have started the egresses before answering; give a late one time to
	// show up anyway.
	time.Sleep(3 * time.Second)
	for _, room := range []string{"team-call", env.meetRoom} {
		if l, err := env.eg.List(timeout(t, 30*time.Second), room); err != nil || len(l) != 0 {
			t.Fatalf("egresses for %s after refused !starts: %d (%v)", room, len(l), err)
		}
	}
	if strings.Contains(p.log.String(), "Recording a LiveKit room with Egress") {
		t.Fatal("the bot logged a recording for a refused !start")
	}
	if !strings.Contains(p.log.String(), "Refused an Egress recording the config does not allow") {
		t.Error("the refusal is not logged")
	}

	// The listed room: a room outside its pattern is refused, one inside it recorded.
	since := say(t, alice, listed, "!start meet/"+env.meetRoom)
	waitNotice(t, alice, listed, since, 60*time.Second, "may not record", key)
	since = say(t, alice, listed, "!start meet/team-call")
	waitNotice(t, alice, listed, since, 90*time.Second, "Recording started")
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := env.eg.List(timeout(t, 30*time.Second), "team-call")
		if err == nil && len(l) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("egresses for team-call after an allowed !start: %d (%v)", len(l), err)
		}
		time.Sleep(time.Second)
	}

	// Elsewhere, !status and !stop do not see the recording, and a signed webhook about it
	// played again is ignored.
	since = say(t, mallory, unlisted, "!status")
	waitNotice(t, mallory, unlisted, since, 30*time.Second, "Nothing is being recorded in this room")
	since = say(t, mallory, unlisted, "!stop")
	waitNotice(t, mallory, unlisted, since, 30*time.Second, "Nothing is being recorded in this room")
	replayWebhook(t, port, env.lk.APIKey(), env.lk.APISecret(), "team-call")
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log.String(), "Ignored a LiveKit webhook already received") {
		if time.Now().After(deadline) {
			t.Fatal("a replayed webhook was not ignored")
		}
		time.Sleep(200 * time.Millisecond)
	}
	since = say(t, alice, listed, "!status")
	if st := waitNotice(t, alice, listed, since, 30*time.Second, "LiveKit Egress on meet"); !strings.Contains(st, "team-call") {
		t.Errorf("status of the listed room: %s", st)
	}

	time.Sleep(4 * time.Second)
	since = say(t, alice, listed, "!stop")
	waitNotice(t, alice, listed, since, 2*time.Minute, "Recording saved")
	folder, m := lastFolder(t, cfg.Recordings.Dir)
	keepOnFailure(t, folder)
	if m.RoomID != string(listed) {
		t.Errorf("the recording belongs to %s, want the listed room %s", m.RoomID, listed)
	}
	f := egressFile(t, m, "ann", recorder.SourceMicrophone)
	if f.Status != recorder.StatusComplete {
		t.Fatalf("Ann's file: %+v", f)
	}
	checkEgressAudio(t, filepath.Join(folder, f.File), f, 440, 660)
	if l, _ := env.eg.List(timeout(t, 30*time.Second), env.meetRoom); len(l) != 0 {
		t.Errorf("the Meet room, never allowed, has %d egresses", len(l))
	}
}

// replayWebhook posts one signed webhook twice: the first is taken, the second answered
// and ignored (the bot logs it). Both get 200 (LiveKit would retry otherwise).
func replayWebhook(t *testing.T, port int, key, secret, room string) {
	t.Helper()
	ev := &livekit.WebhookEvent{Event: "room_started", Id: "EV_replayed_" + uniq("x"), CreatedAt: time.Now().Unix(), Room: &livekit.Room{Name: room}}
	body, err := protojson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	at := auth.NewAccessToken(key, secret).SetValidFor(5 * time.Minute)
	at.SetSha256(webhookChecksum(body))
	tok, err := at.ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/livekit/webhook", port), bytes.NewReader(body))
		req.Header.Set("Authorization", tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("webhook %d: HTTP %d", i+1, resp.StatusCode)
		}
	}
}

// Package integration runs the bot against real components on 127.0.0.1: a Dendrite
// homeserver built from its Go module, real pion peers that behave like matrix-js-sdk, and
// ffprobe/ffmpeg/mkvinfo/opusinfo on every file written. Tests are named TestIntegration*
// and run only with MATRIX_RECORDER_INTEGRATION=1 (scripts/test.sh sets it inside a
// private network namespace).
package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/bot"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/internal/testclient"
	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// One Dendrite serves every test of the package; each test uses its own accounts and rooms.
var (
	hsOnce sync.Once
	hs     *devhs.Server
	hsErr  error
)

func homeserver(t *testing.T) *devhs.Server {
	t.Helper()
	testenv.RequireIntegration(t)
	hsOnce.Do(func() {
		log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
		hs, hsErr = devhs.Start(context.Background(), devhs.Options{Logger: &log})
	})
	if hsErr != nil {
		t.Fatalf("start dendrite: %v", hsErr)
	}
	return hs
}

func TestMain(m *testing.M) {
	code := m.Run()
	if hs != nil {
		_ = hs.Stop()
	}
	os.Exit(code)
}

func testLogger(t *testing.T) zerolog.Logger {
	level := zerolog.InfoLevel
	if os.Getenv("MATRIX_RECORDER_TEST_DEBUG") == "1" {
		level = zerolog.DebugLevel
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: zerolog.NewTestWriter(t), NoColor: true, TimeFormat: "15:04:05.000"}).Level(level).With().Timestamp().Logger()
}

func uniq(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// runningBot is a bot started in-process.
type runningBot struct {
	bot    *bot.Bot
	cfg    config.Config
	cancel context.CancelFunc
	done   chan error
}

// botConfig registers a bot account and returns a config for it.
func botConfig(t *testing.T, s *devhs.Server) config.Config {
	t.Helper()
	ctx := context.Background()
	local := uniq("recorder")
	password := "pw-" + local
	acc, err := s.Register(ctx, local, password)
	if err != nil {
		t.Fatalf("register bot: %v", err)
	}
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Matrix.Homeserver = s.URL()
	cfg.Matrix.UserID = acc.UserID
	cfg.Matrix.Password = password
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Recordings.Dir = filepath.Join(dir, "recordings")
	cfg.WebRTC.IncludeLoopback = true
	cfg.WebRTC.UseHomeserverTURN = false
	return cfg
}

func startBot(t *testing.T, cfg config.Config) *runningBot {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b, err := bot.New(ctx, cfg, bot.Options{Version: "test", Logger: testLogger(t).With().Str("side", "bot").Logger()})
	if err != nil {
		t.Fatalf("start bot: %v", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	rb := &runningBot{bot: b, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { rb.done <- b.Run(rctx, 30*time.Second) }()
	select {
	case <-b.Ready():
	case err := <-rb.done:
		t.Fatalf("bot stopped before its first sync: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("bot did not finish its first sync")
	}
	t.Cleanup(func() { rb.stop(t) })
	return rb
}

func (rb *runningBot) stop(t *testing.T) {
	if rb.cancel == nil {
		return
	}
	rb.cancel()
	rb.cancel = nil
	select {
	case err := <-rb.done:
		if err != nil {
			t.Errorf("bot stopped with error: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Error("bot did not stop in time")
	}
}

// newCaller registers a user and starts a js-sdk-like client for it.
func newCaller(t *testing.T, s *devhs.Server, prefix string) *caller.Client {
	t.Helper()
	ctx := context.Background()
	local := uniq(prefix)
	acc, err := s.Register(ctx, local, "pw-"+local)
	if err != nil {
		t.Fatalf("register %s: %v", local, err)
	}
	c, err := caller.New(ctx, caller.Options{
		Homeserver: s.URL(), UserID: acc.UserID, AccessToken: acc.AccessToken, DeviceID: acc.DeviceID,
		DataDir: t.TempDir(), Logger: testLogger(t).With().Str("side", local).Logger(),
	})
	if err != nil {
		t.Fatalf("start caller: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitSummary waits for the bot's end-of-call notice.
func waitSummary(t *testing.T, c *caller.Client, room id.RoomID, since time.Time) string {
	t.Helper()
	return waitView(t, "end-of-call summary", func() []testclient.Message { return c.Notices(room) }, since, 60*time.Second, "Recording saved", "Files of recording")
}

// finishedFolder returns the single call folder in the bot's recordings dir and its manifest,
// after it is finished.
func finishedFolder(t *testing.T, rb *runningBot) (string, *recorder.Manifest) {
	t.Helper()
	return finishedFolderIn(t, rb.cfg.Recordings.Dir)
}

// finishedFolderIn is finishedFolder for a recordings dir.
func finishedFolderIn(t *testing.T, dir string) (string, *recorder.Manifest) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir(dir)
		var folders []string
		for _, e := range entries {
			if e.IsDir() {
				folders = append(folders, filepath.Join(dir, e.Name()))
			}
		}
		if len(folders) == 1 {
			m, err := recorder.ReadManifest(folders[0])
			if err == nil && m.Status == recorder.StatusFinished {
				return folders[0], m
			}
		} else if len(folders) > 1 {
			t.Fatalf("want one call folder, got %v", folders)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished call folder in %s", dir)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkFile verifies a recorded file with independent tools: ffprobe says the codec and a
// duration within 5% of want, ffmpeg decodes it without errors, and mkvinfo/opusinfo accept it.
func checkFile(t *testing.T, path, codec string, want time.Duration) mediacheck.Info {
	t.Helper()
	ctx := timeout(t, time.Minute)
	info, err := mediacheck.Probe(ctx, path)
	if err != nil {
		t.Fatalf("ffprobe %s: %v", filepath.Base(path), err)
	}
	if len(info.Streams) != 1 || info.Streams[0].CodecName != codec {
		t.Errorf("%s: streams %+v, want one %s stream", filepath.Base(path), info.Streams, codec)
	}
	if d := info.Duration; d < want*95/100 || d > want*105/100 {
		t.Errorf("%s: duration %v, want %v ±5%%", filepath.Base(path), d, want)
	}
	if errs, err := mediacheck.DecodeErrors(ctx, path); err != nil || errs != "" {
		t.Errorf("%s: ffmpeg decode errors: %v %s", filepath.Base(path), err, errs)
	}
	switch filepath.Ext(path) {
	case ".ogg":
		if _, err := mediacheck.OpusInfo(ctx, path); err != nil {
			t.Errorf("%s: opusinfo: %v", filepath.Base(path), err)
		}
	case ".webm", ".mkv":
		if _, err := mediacheck.MKVInfo(ctx, path); err != nil {
			t.Errorf("%s: mkvinfo: %v", filepath.Base(path), err)
		}
	}
	return info
}

func trackBySource(m *recorder.Manifest, source string) []recorder.FileEntry {
	var out []recorder.FileEntry
	for _, tr := range m.Tracks {
		if tr.Source == source {
			out = append(out, tr)
		}
	}
	return out
}

func mustOne(t *testing.T, m *recorder.Manifest, source string) recorder.FileEntry {
	t.Helper()
	ts := trackBySource(m, source)
	if len(ts) != 1 {
		t.Fatalf("want exactly one %s file, manifest has %d: %+v", source, len(ts), m.Tracks)
	}
	return ts[0]
}

func describe(m *recorder.Manifest) string {
	var b strings.Builder
	for _, tr := range m.Tracks {
		fmt.Fprintf(&b, "%s (%s, %d ms from %d ms, %s)\n", tr.File, tr.Source, tr.DurationMs, tr.StartOffsetMs, tr.EndReason)
	}
	return b.String()
}

// The real binary, built once per test run, for tests that signal or kill the process.
var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "matrix-recorder-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "matrix-recorder")
		cmd := exec.Command("go", "build", "-tags", "goolm", "-o", binPath, "github.com/matrix-recorder/matrix-recorder/cmd/matrix-recorder")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out.String())
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// writeConfig writes cfg as a YAML config file and returns its path.
func writeConfig(t *testing.T, cfg config.Config) string {
	t.Helper()
	data, err := yaml.Marshal(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// process is the bot running as its own process.
type process struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProcess runs the binary with a config file and waits until it has synced once.
func startProcess(t *testing.T, cfg config.Config) *process {
	t.Helper()
	cfg.Log.Format = "json"
	p := &process{cmd: exec.Command(buildBinary(t), "-config", writeConfig(t, cfg)), log: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("bot process log:\n%s", p.log.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.log.String(), "First sync done") {
		select {
		case err := <-p.done:
			t.Fatalf("bot exited before its first sync: %v\n%s", err, p.log.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("bot did not sync:\n%s", p.log.String())
		}
	}
	return p
}

// dmCall is a running bot, a caller in a DM with it, and a connected call.
type dmCall struct {
	rb    *runningBot
	c     *caller.Client
	room  id.RoomID
	call  *caller.Call
	start time.Time
	ctx   context.Context
}

// startDMCall starts a bot, creates a DM (encrypted or not) with a new caller, places a call
// with opts and waits until its media is connected.
func startDMCall(t *testing.T, encrypted bool, opts caller.CallOptions) *dmCall {
	t.Helper()
	s := homeserver(t)
	d := &dmCall{rb: startBot(t, botConfig(t, s)), c: newCaller(t, s, "alice")}
	d.room, d.ctx = directRoom(t, d.rb, d.c, encrypted, 3*time.Minute)
	d.start = time.Now()
	d.call = dial(t, d.ctx, d.c, d.room, opts)
	return d
}

// directRoom creates a direct room between c and the bot, waits until the bot joined and
// returns it with a context for the rest of the test (d long).
func directRoom(t *testing.T, rb *runningBot, c *caller.Client, encrypted bool, d time.Duration) (id.RoomID, context.Context) {
	t.Helper()
	ctx := timeout(t, d)
	room, err := c.CreateDM(ctx, rb.bot.UserID(), encrypted)
	if err != nil {
		t.Fatal(err)
	}
	return room, ctx
}

// dial calls the bot in room and waits until media flows.
func dial(t *testing.T, ctx context.Context, c *caller.Client, room id.RoomID, opts caller.CallOptions) *caller.Call {
	t.Helper()
	call, err := c.Call(ctx, room, opts)
	if err != nil {
		t.Fatalf("call not answered: %v", err)
	}
	if err := call.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return call
}

// hangup ends the call, waits for the bot's summary and returns it with the finished folder.
func (d *dmCall) hangup(t *testing.T) (folder string, m *recorder.Manifest, summary string) {
	t.Helper()
	if err := d.call.Hangup(d.ctx); err != nil {
		t.Fatal(err)
	}
	summary = waitSummary(t, d.c, d.room, d.start)
	folder, m = finishedFolder(t, d.rb)
	return folder, m, summary
}

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
)

// TestIntegrationSecondInstanceRefused: a second recorder started on the data_dir of a
// running one exits with the usage error code and names the running one's pid and the
// lock file; the first one goes on.
func TestIntegrationSecondInstanceRefused(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	first := startProcess(t, cfg)
	cfg.Log.Format = "json"
	second := exec.Command(buildBinary(t), "-config", writeConfig(t, cfg))
	var out bytes.Buffer
	second.Stdout, second.Stderr = &out, &out
	done := make(chan error, 1)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- second.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Fatalf("second instance: %v, want exit code 2\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		_ = second.Process.Kill()
		t.Fatalf("the second instance did not refuse to start:\n%s", out.String())
	}
	for _, want := range []string{strconv.Itoa(first.cmd.Process.Pid), filepath.Join(cfg.DataDir, "lock")} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the refusal does not name %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Logged in") || strings.Contains(out.String(), "Repaired") {
		t.Errorf("the second instance went on before refusing:\n%s", out.String())
	}
	select {
	case err := <-first.done:
		t.Fatalf("the first instance stopped: %v", err)
	default:
	}
}

// TestIntegrationUnknownCommandsIgnored: another user's (or bot's) unknown command gets no
// reply, even one edit away from one of the bot's commands (another bot's !stat); a typo
// in a message that mentions the bot gets a hint.
func TestIntegrationUnknownCommandsIgnored(t *testing.T) {
	s := homeserver(t)
	rb := startBot(t, botConfig(t, s))
	alice := newCaller(t, s, "alice")
	bob := newCaller(t, s, "bob")
	room, ctx := directRoom(t, rb, alice, false, 2*time.Minute)
	waitNotice(t, alice, room, time.Time{}, 30*time.Second, "Hello!")
	if _, err := alice.Matrix().InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: bob.UserID()}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Matrix().JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	if err := bob.WaitMembership(ctx, room, bob.UserID(), "join"); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	for _, msg := range []string{"!ban @spammer:example.org spam", "!!! great", "!kick @x:example.org", "!stat", "!statsu", "!statsu " + string(rb.bot.UserID()), "!help"} {
		if err := bob.SendMessage(ctx, room, msg); err != nil {
			t.Fatal(err)
		}
	}
	// The bot handles a room's messages in order: once !help is answered, everything
	// before it was seen.
	waitNotice(t, bob, room, since, 30*time.Second, "After the call:")
	var answers []string
	for _, n := range bob.Notices(room) {
		if n.Sender == rb.bot.UserID() && !n.At.Before(since) {
			answers = append(answers, n.Body)
		}
	}
	if len(answers) != 2 || !strings.Contains(answers[0], "Did you mean !status") || !strings.Contains(answers[1], "After the call:") {
		t.Fatalf("answers to bob: %q; want the hint for the !statsu that mentions the bot, and the help", answers)
	}
}

// TestIntegrationRecordingLinksNeedParticipant: !recordings ID is refused to a member who
// was not recorded and may not start recordings; the person recorded gets signed links
// that work.
func TestIntegrationRecordingLinksNeedParticipant(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	port, err := devtools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.HTTP.PublicURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	rb := startBot(t, cfg)
	alice := newCaller(t, s, "alice")
	room, summary := recordDM(t, alice, rb.bot.UserID(), false, 3*time.Second)
	recID := recordingID.FindStringSubmatch(summary)[1]

	bob := newCaller(t, s, "bob")
	ctx := timeout(t, time.Minute)
	if _, err := alice.Matrix().InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: bob.UserID()}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Matrix().JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	if err := bob.WaitMembership(ctx, room, bob.UserID(), "join"); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	if err := bob.SendMessage(ctx, room, "!recordings "+recID); err != nil {
		t.Fatal(err)
	}
	refusal := waitNotice(t, bob, room, since, 30*time.Second, "for the people recorded in it")
	t.Logf("refusal: %s", refusal)
	if err := bob.SendMessage(ctx, room, "!recordings"); err != nil {
		t.Fatal(err)
	}
	waitNotice(t, bob, room, since, 30*time.Second, "Recordings in this room", recID)
	for _, n := range bob.Notices(room) {
		if n.Sender == rb.bot.UserID() && !n.At.Before(since) && strings.Contains(n.Body, "/download/") {
			t.Errorf("bob got links: %s", n.Body)
		}
	}

	since = time.Now()
	if err := alice.SendMessage(ctx, room, "!recordings "+recID); err != nil {
		t.Fatal(err)
	}
	fresh := waitNotice(t, alice, room, since, 30*time.Second, "Recording saved", "/download/")
	for _, u := range append(links(summary), links(fresh)...) {
		if !strings.Contains(u, "exp=") || !strings.Contains(u, "sig=") {
			t.Errorf("link not signed: %s", u)
		}
		if code, _ := fetch(t, u); code != http.StatusOK {
			t.Errorf("GET %s: %d", u, code)
		}
	}
	// A forged signature opens nothing.
	if urls := links(fresh); len(urls) > 0 {
		if code, _ := fetch(t, regexp.MustCompile(`sig=[^&\s]+`).ReplaceAllString(urls[0], "sig=AAAAAAAAAAAAAAAAAAAAAAAA")); code == http.StatusOK {
			t.Error("a forged signature downloads the file")
		}
	}
}

// TestIntegrationCrossSigningInterrupted: the real binary gets SIGTERM during its first
// start, right when the homeserver has accepted its new cross-signing keys (a proxy holds
// the answer back until the signal is in): the recovery key is on disk already, and the
// next start signs the device with it.
func TestIntegrationCrossSigningInterrupted(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	proxy := newPublishProxy(t, s.URL())
	cfg.Matrix.Homeserver = proxy.srv.URL
	cfg.Log.Format = "json"
	var p *process
	started := make(chan struct{})
	proxy.onPublished = func() {
		<-started
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM: %v", err)
			return
		}
		// Answer only once the bot has given up on the request.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(p.log.String(), "Stopping cleanly") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
	}
	p = runProcess(t, cfg)
	close(started)
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the interrupted first start did not exit:\n%s", p.log.String())
	}
	if !proxy.hit.Load() {
		t.Fatalf("the first start never published cross-signing keys:\n%s", p.log.String())
	}
	device := deviceFromLog(t, p.log.String())
	keyFile := filepath.Join(cfg.DataDir, "recovery-key.txt")
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("keys were published, but their recovery key is not on disk: %v\n%s", err, p.log.String())
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("recovery key file mode %04o", fi.Mode().Perm())
	}
	key, _ := os.ReadFile(keyFile)
	if strings.Contains(p.log.String(), strings.TrimSpace(string(key))) {
		t.Error("the recovery key is in the log")
	}

	restarted := startProcess(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for !deviceCrossSigned(t, s, cfg.Matrix.UserID, cfg.Matrix.Password, device) {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted bot did not sign its device:\n%s", restarted.log.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if again, _ := os.ReadFile(keyFile); !bytes.Equal(again, key) {
		t.Error("the restart replaced the recovery key")
	}
}

// runProcess starts the binary with a config file without waiting for anything.
func runProcess(t *testing.T, cfg config.Config) *process {
	t.Helper()
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
	return p
}

var deviceIDField = regexp.MustCompile(`"device_id":"([A-Za-z0-9_-]+)"`)

func deviceFromLog(t *testing.T, log string) id.DeviceID {
	t.Helper()
	var m []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Logged in") {
			m = deviceIDField.FindStringSubmatch(line)
		}
	}
	if m == nil {
		t.Fatalf("no device id in the log:\n%s", log)
	}
	return id.DeviceID(m[1])
}

// publishProxy forwards everything to the homeserver. The first cross-signing upload the
// homeserver accepts is answered only after onPublished has run: what a bot stopped just
// then sees (the server has the keys, the bot never heard back).
type publishProxy struct {
	srv         *httptest.Server
	hit         atomic.Bool
	onPublished func()
}

func newPublishProxy(t *testing.T, upstream string) *publishProxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &publishProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/keys/device_signing/upload") || p.hit.Load() {
			rp.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		// Detached from the bot's request: the homeserver gets it whole even if the bot
		// gives up.
		req, err := http.NewRequestWithContext(context.Background(), r.Method, upstream+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK && p.hit.CompareAndSwap(false, true) && p.onPublished != nil {
			p.onPublished()
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(answer)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

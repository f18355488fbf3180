package integration

// The browser harness: real JavaScript clients (matrix-js-sdk, livekit-client) in headless
// Chromium, driven through test/browser/driver.mjs (playwright-core over the Debian
// chromium binary). scripts/test.sh installs the npm packages (pinned by
// test/browser/package-lock.json) and bundles the pages into test/browser/dist before the
// network namespace stage; here the bundle is served on 127.0.0.1 and the page's
// window.harness functions are called one JSON line at a time.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
)

// browserDir is test/browser, seen from this package's directory.
func browserDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "browser"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// requireBrowser returns the paths the browser tests need, or skips (fails under CI, where
// scripts/test.sh has installed everything) when one is missing.
func requireBrowser(t *testing.T, page string) (chromium, node, dir string) {
	t.Helper()
	testenv.RequireIntegration(t)
	dir = browserDir(t)
	chromium = os.Getenv("MATRIX_RECORDER_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	var missing []string
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, "chromium ("+chromium+"; apt-get install chromium)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node")
	}
	for _, f := range []string{"dist/" + page, "node_modules/playwright-core/package.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			missing = append(missing, "test/browser/"+f+" (scripts/test.sh installs and bundles it)")
		}
	}
	if len(missing) > 0 {
		testenv.SkipOrFail(t, "browser test needs %s", strings.Join(missing, ", "))
	}
	return chromium, node, dir
}

// toneWAV writes a mono 48 kHz WAV of a sine tone for Chromium's fake microphone
// (--use-file-for-fake-audio-capture, which loops it): a signal the recording can be checked
// against, unlike the default fake microphone.
func toneWAV(t *testing.T, hz int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("tone%d.wav", hz))
	out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=48000:duration=10", hz),
		"-ac", "1", "-c:a", "pcm_s16le", path).CombinedOutput()
	if err != nil {
		t.Fatalf("make the fake microphone's tone: %v %s", err, out)
	}
	return path
}

// serveDist serves test/browser/dist on 127.0.0.1 and returns its base URL.
func serveDist(t *testing.T, dir string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(filepath.Join(dir, "dist"))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// browserPage is one page in one headless Chromium, behind driver.mjs.
type browserPage struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	log   *syncBuffer
	done  chan struct{}

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan browserReply
	exited  error
}

type browserReply struct {
	ID     int             `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *string         `json:"error"`
	Event  string          `json:"event"`
	Text   string          `json:"text"`
	Type   string          `json:"type"`
}

// startBrowser opens page (a file in dist, e.g. "matrixcall.html") in a fresh headless
// Chromium profile (with chromiumArgs besides driver.mjs's own) and waits until its harness
// is loaded. The browser's console goes to the test log when the test fails (or always with
// MATRIX_RECORDER_TEST_DEBUG=1).
func startBrowser(t *testing.T, page string, chromiumArgs ...string) *browserPage {
	t.Helper()
	chromium, node, dir := requireBrowser(t, page)
	base := serveDist(t, dir)
	// Short paths: Chromium puts a unix socket under TMPDIR, and a socket path over 107
	// bytes (t.TempDir() under a long subtest name) is a fatal error.
	short, err := os.MkdirTemp("", "chr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(short) })
	profile, tmp := filepath.Join(short, "profile"), filepath.Join(short, "tmp")
	for _, d := range []string{profile, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{filepath.Join(dir, "driver.mjs"), "--chromium", chromium, "--profile", profile, "--url", base + "/" + page}
	for _, a := range chromiumArgs {
		args = append(args, "--extra-arg="+a)
	}
	cmd := exec.Command(node, args...)
	cmd.Dir = dir
	// HOME and the temp dir under the test's: Chromium writes caches there.
	cmd.Env = append(os.Environ(), "HOME="+profile, "TMPDIR="+tmp)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &browserPage{t: t, cmd: cmd, stdin: stdin, log: &syncBuffer{}, done: make(chan struct{}), waiting: map[int]chan browserReply{}}
	cmd.Stderr = b.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the browser driver: %v", err)
	}
	ready := make(chan string, 1)
	go b.read(stdout, ready)
	t.Cleanup(func() {
		b.close()
		if t.Failed() || os.Getenv("MATRIX_RECORDER_TEST_DEBUG") == "1" {
			t.Logf("browser log (%s):\n%s", page, browserLogTail(b.log.String(), 400))
		}
	})
	select {
	case v := <-ready:
		t.Logf("browser ready: Chromium %s", v)
	case <-b.done:
		t.Fatalf("the browser driver exited before the page was ready: %v\n%s", b.exited, browserLogTail(b.log.String(), 100))
	case <-time.After(90 * time.Second):
		t.Fatalf("the page did not load in time:\n%s", browserLogTail(b.log.String(), 100))
	}
	return b
}

func (b *browserPage) read(stdout io.Reader, ready chan<- string) {
	defer close(b.done)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		var r browserReply
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			fmt.Fprintf(b.log, "driver: %s\n", sc.Text())
			continue
		}
		switch {
		case r.Event == "ready":
			ready <- r.Text
		case r.Event != "":
			fmt.Fprintf(b.log, "%s %s: %s\n", time.Now().Format("15:04:05.000"), r.Event, r.Text)
		default:
			b.mu.Lock()
			ch := b.waiting[r.ID]
			delete(b.waiting, r.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- r
			}
		}
	}
	err := b.cmd.Wait()
	b.mu.Lock()
	b.exited = fmt.Errorf("driver exited: %v", err)
	b.mu.Unlock()
}

// call runs window.harness[fn](args...) in the page and decodes its result into out (when
// not nil).
func (b *browserPage) call(ctx context.Context, out any, fn string, args ...any) error {
	if args == nil {
		args = []any{}
	}
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan browserReply, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	line, err := json.Marshal(map[string]any{"id": id, "call": fn, "args": args})
	if err != nil {
		return err
	}
	if _, err := b.stdin.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("calling %s in the page: %w", fn, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s in the page: %s", fn, *r.Error)
		}
		if out != nil {
			if err := json.Unmarshal(r.Result, out); err != nil {
				return fmt.Errorf("decoding the result of %s (%s): %w", fn, r.Result, err)
			}
		}
		return nil
	case <-b.done:
		return fmt.Errorf("calling %s: the browser is gone: %v", fn, b.exited)
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.waiting, id)
		b.mu.Unlock()
		return fmt.Errorf("calling %s in the page: %w", fn, ctx.Err())
	}
}

// must is call that fails the test on error.
func (b *browserPage) must(ctx context.Context, out any, fn string, args ...any) {
	b.t.Helper()
	if err := b.call(ctx, out, fn, args...); err != nil {
		b.t.Fatal(err)
	}
}

// waitPage polls fn (with args) until ok says its result is what the test waits for.
func waitPage[T any](ctx context.Context, b *browserPage, what string, ok func(T) bool, fn string, args ...any) (T, error) {
	var last T
	for {
		var v T
		if err := b.call(ctx, &v, fn, args...); err != nil {
			return last, fmt.Errorf("waiting for %s: %w", what, err)
		}
		last = v
		if ok(v) {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("waiting for %s: %w (last: %+v)", what, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// close ends the driver (closing stdin closes the browser) and waits for it.
func (b *browserPage) close() {
	_ = b.stdin.Close()
	select {
	case <-b.done:
	case <-time.After(20 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

func browserLogTail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = append([]string{fmt.Sprintf("... (%d lines before)", len(parts)-lines)}, parts[len(parts)-lines:]...)
	}
	return strings.Join(parts, "\n")
}

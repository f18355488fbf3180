package web

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// serveFixture runs the fixture's handler behind ServeWith with short limits.
func serveFixture(t *testing.T, l Limits) (*fixture, string) {
	t.Helper()
	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, _, err := ServeWith(ctx, "127.0.0.1:0", f.srv.Config.Handler, zerolog.Nop(), l)
	if err != nil {
		t.Fatal(err)
	}
	return f, addr
}

func shortLimits() Limits {
	l := DefaultLimits()
	l.ReadHeader, l.Read, l.Write, l.Idle, l.Body = 300*time.Millisecond, time.Second, time.Second, 300*time.Millisecond, 300*time.Millisecond
	return l
}

// closedSoon reports whether the server closes conn (or answers and closes) before the
// client gives up; the bound is generous, the server's limits are short.
func closedSoon(t *testing.T, conn net.Conn) (answer string, closed bool) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return string(b), false
	}
	return string(b), true
}

func dialServer(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Slow or stalled clients do not hold connections: headers that never end, a body that
// never comes, a kept-alive connection that idles.
func TestServerDropsSlowClients(t *testing.T) {
	_, addr := serveFixture(t, shortLimits())
	t.Run("headers", func(t *testing.T) {
		c := dialServer(t, addr)
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		if _, closed := closedSoon(t, c); !closed {
			t.Error("a request whose headers never end kept its connection")
		}
	})
	t.Run("body", func(t *testing.T) {
		c := dialServer(t, addr)
		_, _ = io.WriteString(c, "POST /s3/events?token=0123456789abcdef0123 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"Rec")
		if _, closed := closedSoon(t, c); !closed {
			t.Error("a body that never completes kept its connection")
		}
	})
	t.Run("idle", func(t *testing.T) {
		c := dialServer(t, addr)
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		r := bufio.NewReader(c)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := r.ReadByte(); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Errorf("an idle kept-alive connection stayed open: %v", err)
		}
	})
}

// /s3/events answers before reading a body it would refuse: no token, no length, too long.
func TestEventPrecheckReadsNoBody(t *testing.T) {
	f, addr := serveFixture(t, DefaultLimits()) // long limits: only the pre-check can answer in time
	for name, req := range map[string]string{
		"chunked":  "POST /s3/events?token=0123456789abcdef0123 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"no token": "POST /s3/events HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n",
		"too long": "POST /s3/events?token=0123456789abcdef0123 HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := dialServer(t, addr)
			_, _ = io.WriteString(c, req) // and no body: a server that reads it waits
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer without the body: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Errorf("status %d, want a refusal", resp.StatusCode)
			}
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) != 0 {
		t.Errorf("refused events were processed: %v", f.seen)
	}
}

// A large download on a slow reader goes on as long as it makes progress.
func TestServerWriteTimeoutIsIdle(t *testing.T) {
	l := shortLimits()
	l.Write = time.Second
	f, addr := serveFixture(t, l)
	big := strings.Repeat("x", 8<<20)
	if err := writeFile(f, big); err != nil {
		t.Fatal(err)
	}
	c := dialServer(t, addr)
	link := f.links.URL("", f.part.Token, f.part.File, time.Now().Add(time.Hour))
	_, _ = io.WriteString(c, "GET "+link+" HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Read slowly: the whole download takes longer than Write, each pause does not.
	n := 0
	buf := make([]byte, 64<<10)
	start := time.Now()
	for {
		k, err := resp.Body.Read(buf)
		n += k
		if err != nil {
			break
		}
		time.Sleep(30 * time.Millisecond) // far below the write limit
	}
	if n != len(big) {
		t.Errorf("got %d of %d bytes in %v: a slow but steady download was cut", n, len(big), time.Since(start))
	} else if d := time.Since(start); d < 2*l.Write {
		t.Fatalf("the download took %v, not longer than the write limit: the test proves nothing", d)
	}
}

func writeFile(f *fixture, data string) error {
	return os.WriteFile(filepath.Join(f.dir, "call1", f.part.File), []byte(data), 0o600)
}

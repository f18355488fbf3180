package httpserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// bigFile is what the test server serves at /big: larger than a socket buffer, so a slow
// reader makes the server wait.
var bigFile = strings.Repeat("x", 8<<20)

// start runs a server with routes like the recorder's (a body reader, a large download,
// the health check) and limits l.
func start(t *testing.T, l Limits, health error) string {
	t.Helper()
	s := New(zerolog.Nop())
	s.SetLimits(l)
	s.Handle("POST /body", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	s.Handle("GET /big", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "big", time.Time{}, strings.NewReader(bigFile))
	}))
	s.Handle("GET "+HealthPath, Health(Check{Name: "sync", Run: func(context.Context) error { return health }}))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, _, err := s.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return addr
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
	addr := start(t, shortLimits(), nil)
	t.Run("headers", func(t *testing.T) {
		c := dialServer(t, addr)
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		if _, closed := closedSoon(t, c); !closed {
			t.Error("a request whose headers never end kept its connection")
		}
	})
	t.Run("body", func(t *testing.T) {
		c := dialServer(t, addr)
		_, _ = io.WriteString(c, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"Rec")
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

// A body larger than the limit is refused in every handler.
func TestServerBoundsBodies(t *testing.T) {
	l := DefaultLimits()
	l.MaxBodyBytes = 1000
	addr := start(t, l, nil)
	resp, err := http.Post("http://"+addr+"/body", "text/plain", bytes.NewReader(make([]byte, 5000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("an oversized body: %d, want 400", resp.StatusCode)
	}
}

// A large download on a slow reader goes on as long as it makes progress.
func TestServerWriteTimeoutIsIdle(t *testing.T) {
	l := shortLimits()
	l.Write = 2 * time.Second
	addr := start(t, l, nil)
	c := dialServer(t, addr)
	_, _ = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
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
		time.Sleep(40 * time.Millisecond) // far below the write limit
	}
	if n != len(bigFile) {
		t.Errorf("got %d of %d bytes in %v: a slow but steady download was cut", n, len(bigFile), time.Since(start))
	} else if d := time.Since(start); d < 2*l.Write {
		t.Fatalf("the download took %v, not longer than the write limit: the test proves nothing", d)
	}
}

func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		body string
	}{{nil, 200, `"ok"`}, {errors.New("sync failing"), 503, "sync failing"}} {
		addr := start(t, DefaultLimits(), tc.err)
		resp, err := http.Get("http://" + addr + HealthPath)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.body) {
			t.Errorf("healthz with %v: %d %s", tc.err, resp.StatusCode, b)
		}
	}
}

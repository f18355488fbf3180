// Package testenv holds the switches and helpers shared by the integration
// tests, which run against real servers started on 127.0.0.1.
//
// Convention: integration tests are named TestIntegration* and begin with
// RequireIntegration(t). They run only with MATRIX_RECORDER_INTEGRATION=1,
// which scripts/test.sh sets inside a private network namespace
// (unshare -n, lo up) after building the tools, so that nothing they start
// can reach, or be reached from, other machines:
//
//	go test -tags goolm -run Integration ./...
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Environment variables read by the tests.
const (
	// EnvIntegration=1 enables the TestIntegration* tests.
	EnvIntegration = "MATRIX_RECORDER_INTEGRATION"
	// EnvCI=1 turns a missing tool or server into a failure, not a skip.
	EnvCI = "MATRIX_RECORDER_CI"
)

// IsCI reports whether MATRIX_RECORDER_CI=1.
func IsCI() bool { return os.Getenv(EnvCI) == "1" }

// RequireIntegration skips t unless MATRIX_RECORDER_INTEGRATION=1, and fails
// it when 127.0.0.1 cannot be reached (a network namespace whose lo is down).
func RequireIntegration(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvIntegration) != "1" {
		t.Skipf("integration test: set %s=1 (scripts/test.sh does, in a network namespace)", EnvIntegration)
	}
	if err := CheckLoopback(); err != nil {
		t.Fatalf("integration tests need 127.0.0.1: %v (in a new network namespace run `ip link set lo up` first)", err)
	}
}

// CheckLoopback listens on 127.0.0.1 and connects to itself.
func CheckLoopback() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening on 127.0.0.1: %w", err)
	}
	defer l.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			_ = c.Close()
		}
		accepted <- err
	}()
	c, err := net.DialTimeout("tcp", l.Addr().String(), 2*time.Second)
	if err != nil {
		return fmt.Errorf("connecting to 127.0.0.1: %w", err)
	}
	_ = c.Close()
	if err := <-accepted; err != nil {
		return fmt.Errorf("accepting on 127.0.0.1: %w", err)
	}
	return nil
}

// SkipOrFail skips t with the reason, or fails it when MATRIX_RECORDER_CI=1:
// in CI a missing prerequisite must not turn into a silent pass.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if IsCI() {
		t.Fatalf(format+" (%s=1: failing instead of skipping)", append(args, EnvCI)...)
	}
	t.Skipf(format, args...)
}

// Context returns a context that ends with the test (or at its deadline,
// minus a little time for cleanup) and carries Logger(t).
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx := context.Background()
	cancel := func() {}
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok {
			ctx, cancel = context.WithDeadline(ctx, deadline.Add(-10*time.Second))
		}
	}
	ctx, cancel2 := context.WithCancel(ctx)
	t.Cleanup(func() { cancel2(); cancel() })
	return Logger(t).WithContext(ctx)
}

// Logger returns a zerolog logger writing through t.Log; lines logged after
// the test has finished are dropped instead of panicking.
func Logger(t testing.TB) zerolog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return zerolog.New(zerolog.ConsoleWriter{Out: w, NoColor: true, TimeFormat: time.TimeOnly}).
		With().Timestamp().Logger()
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// LogOnFailure registers a cleanup that prints what tail returns (a server's
// log) when t has failed.
func LogOnFailure(t testing.TB, name string, tail func() string) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- end of %s log ---\n%s", name, tail())
		}
	})
}

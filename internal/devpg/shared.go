package devpg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// EnvTestDatabase=postgres asks the tests that can run on either engine to use
// PostgreSQL (scripts/test.sh runs such packages once more with it).
const EnvTestDatabase = "MATRIX_RECORDER_TEST_DATABASE"

// envCI is set where PostgreSQL must be there (scripts/test.sh installs it).
const envCI = "MATRIX_RECORDER_CI"

// WantPostgres reports whether EnvTestDatabase asks for PostgreSQL ("" and "sqlite": no).
func WantPostgres(t testing.TB) bool {
	t.Helper()
	switch v := os.Getenv(EnvTestDatabase); v {
	case "", "sqlite":
		return false
	case "postgres":
		return true
	default:
		t.Fatalf("%s=%q: sqlite or postgres", EnvTestDatabase, v)
		return false
	}
}

// Shared is one server for all the tests of a test binary: started by the first
// Database, stopped by Close (call it from TestMain after m.Run).
type Shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Server returns the running server, starting it on first use. Without PostgreSQL the test
// is skipped with a message, except in CI (MATRIX_RECORDER_CI=1), where it fails.
func (s *Shared) Server(t testing.TB) *Server {
	t.Helper()
	s.once.Do(func() { s.srv, s.err = Start(context.Background()) })
	if errors.Is(s.err, ErrNoBinaries) && os.Getenv(envCI) != "1" {
		t.Skip("PostgreSQL is not installed (scripts/test.sh installs it): ", s.err)
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.srv
}

// Database returns the connection string of a fresh database for the test.
func (s *Shared) Database(t testing.TB) string {
	t.Helper()
	uri, err := s.Server(t).CreateDatabase(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return uri
}

// Run runs a test binary's tests (m.Run in TestMain) and stops the server after them, for
// TestMain's os.Exit: func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }.
func (s *Shared) Run(m *testing.M) int {
	code := m.Run()
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping PostgreSQL:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Close stops the server if it was started.
func (s *Shared) Close() error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Stop()
}

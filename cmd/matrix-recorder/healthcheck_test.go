package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/httpserver"
)

// healthConfig writes a config whose listener key (metrics.listen, http.listen; "" none)
// is addr.
func healthConfig(t *testing.T, key, addr string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	text := "matrix:\n  homeserver: https://hs.test\n  user_id: '@rec:hs.test'\n  access_token: t\n"
	if key != "" {
		section, name, _ := strings.Cut(key, ".")
		text += fmt.Sprintf("%s:\n  %s: %q\n", section, name, addr)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// healthServer serves /healthz with one check that fails with fail (nil: healthy) and
// returns its port.
func healthServer(t *testing.T, fail error) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET "+httpserver.HealthPath, httpserver.Health(httpserver.Check{
		Name: "recordings_dir", Run: func(context.Context) error { return fail }}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return port
}

// The healthcheck command (run before the bot's flags are parsed) exits 0 when the bot is
// ready and 1 when it is not, not running, or has no listener, in one short line.
func TestHealthcheckExitCodes(t *testing.T) {
	healthy, sick := healthServer(t, nil), healthServer(t, errors.New("recordings.dir is not writable"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name, key, addr string
		code            int
		say             string
	}{
		{"ready on metrics.listen", "metrics.listen", "0.0.0.0:" + healthy, exitOK, "ready"},
		{"ready on http.listen", "http.listen", ":" + healthy, exitOK, "ready"},
		{"not ready", "metrics.listen", "127.0.0.1:" + sick, exitError, "not ready: recordings_dir: recordings.dir is not writable"},
		{"not running", "metrics.listen", closed, exitError, "nothing answers"},
		{"no listener", "", "", exitError, "neither metrics.listen nor http.listen"},
	} {
		var out, errb bytes.Buffer
		code := run([]string{"healthcheck", "-c", healthConfig(t, tc.key, tc.addr), "-timeout", "10s"}, &out, &errb)
		said := out.String() + errb.String()
		if code != tc.code || !strings.Contains(said, tc.say) || strings.Count(said, "\n") != 1 {
			t.Errorf("%s: exit %d, said %q; want %d and %q in one line", tc.name, code, said, tc.code, tc.say)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"healthcheck", "-c", filepath.Join(t.TempDir(), "missing.yaml")}, &out, &errb); code != exitError {
		t.Errorf("missing config: exit %d (%s)", code, errb.String())
	}
	if code := run([]string{"healthcheck", "-h"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "Exit code 0: ready") {
		t.Errorf("-h: exit %d: %s", code, out.String())
	}
}

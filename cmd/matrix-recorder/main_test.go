package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/storage/lockfile"
)

func TestNoConfigExplains(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"-config", filepath.Join(t.TempDir(), "missing.yaml")}, &out, &errb)
	if code != exitConfig {
		t.Fatalf("exit code %d, want %d", code, exitConfig)
	}
	for _, want := range []string{"matrix.homeserver", "matrix.user_id", "matrix.password", "-generate-config", "matrix-recorder demo"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("help does not mention %q:\n%s", want, errb.String())
		}
	}
}

func TestGenerateConfigWritesTheExample(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	var out, errb bytes.Buffer
	if code := run([]string{"-generate-config", "-config", path}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, config.Example) {
		t.Fatalf("written config differs from the example (%v)", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v (%v), want 0600: it may hold secrets", fi.Mode(), err)
	}
	// What is left to fill in is said, as the bot would say it.
	for _, want := range []string{"Wrote " + path, "matrix.homeserver is still the example's", "matrix.password or matrix.access_token is required"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q:\n%s", want, out.String())
		}
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("matrix:\n  homeserver: https://hs\n  user_id: '@a:b'\n  password: x\nrecordings:\n  dirr: /tmp\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-config", path}, &out, &errb); code != exitConfig {
		t.Fatalf("exit %d, want %d", code, exitConfig)
	}
	if !strings.Contains(errb.String(), "dirr") {
		t.Errorf("error does not name the unknown key: %s", errb.String())
	}
}

// A second recorder on a data_dir another one holds exits with the usage error code and
// names the holder's pid and the lock file, before it logs in anywhere.
func TestSecondInstanceRefused(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	held, err := lockfile.Acquire(filepath.Join(data, "lock"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	path := filepath.Join(dir, "config.yaml")
	// The homeserver does not exist: the refusal must come before any login.
	cfg := "matrix:\n  homeserver: http://127.0.0.1:9\n  user_id: '@a:b'\n  password: x\ndata_dir: " + data + "\nrecordings:\n  dir: " + filepath.Join(dir, "rec") + "\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-config", path}, &out, &errb); code != exitConfig {
		t.Fatalf("exit %d, want %d: %s", code, exitConfig, errb.String())
	}
	for _, want := range []string{strconv.Itoa(os.Getpid()), filepath.Join(data, "lock")} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("the refusal does not name %q:\n%s", want, errb.String())
		}
	}
}

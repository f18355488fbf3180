package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/config"
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
	if code := run([]string{"-generate-config", "-config", path}, &out, &errb); code != exitConfig {
		t.Errorf("overwrote an existing config (exit %d)", code)
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

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-version"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "matrix-recorder") {
		t.Fatalf("exit %d, output %q", code, out.String())
	}
}

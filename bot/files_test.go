package bot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/storage/lockfile"
)

// What exists with wider permissions than the recorder gives is reported at start, and
// what is private is not.
func TestCheckModesWarns(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Recordings.Dir = filepath.Join(dir, "recordings")
	for _, d := range []string{cfg.DataDir, filepath.Join(cfg.Recordings.Dir, "call1"), filepath.Join(cfg.Recordings.Dir, "call2")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, pickleKeyFile), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	checkModes(zerolog.New(&buf), cfg)
	if buf.Len() != 0 {
		t.Fatalf("private files reported: %s", buf.String())
	}
	_ = os.Chmod(cfg.DataDir, 0o755)
	_ = os.Chmod(filepath.Join(cfg.DataDir, pickleKeyFile), 0o644)
	_ = os.Chmod(filepath.Join(cfg.Recordings.Dir, "call2"), 0o755)
	checkModes(zerolog.New(&buf), cfg)
	out := buf.String()
	for _, want := range []string{`"path":"` + cfg.DataDir + `"`, pickleKeyFile, `"folders":1`, "call2"} {
		if !strings.Contains(out, want) {
			t.Errorf("no warning with %q:\n%s", want, out)
		}
	}
	// An operator's wider recordings.dir_mode is not a warning.
	buf.Reset()
	cfg.Recordings.DirMode = 0o755
	_ = os.Chmod(cfg.DataDir, 0o700)
	_ = os.Chmod(filepath.Join(cfg.DataDir, pickleKeyFile), 0o600)
	checkModes(zerolog.New(&buf), cfg)
	if buf.Len() != 0 {
		t.Errorf("configured modes reported: %s", buf.String())
	}
}

// Secrets land 0600 even when an older file was wider, and data_dir is taken by one bot.
func TestSecretFileAndLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSecretFile(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o", fi.Mode().Perm())
	}
	data := filepath.Join(dir, "data")
	l, err := lockDataDir(data)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if fi, _ := os.Stat(data); fi.Mode().Perm() != 0o700 {
		t.Errorf("data_dir mode %04o", fi.Mode().Perm())
	}
	var held *lockfile.HeldError
	if _, err := lockDataDir(data); !errors.As(err, &held) {
		t.Errorf("second lock: %v", err)
	}
}

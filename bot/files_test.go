package bot

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/bot/e2ee"
	"github.com/matrix-recorder/matrix-recorder/config"
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
	if err := os.WriteFile(filepath.Join(cfg.DataDir, e2ee.PickleKeyFile), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	checkModes(zerolog.New(&buf), cfg)
	if buf.Len() != 0 {
		t.Fatalf("private files reported: %s", buf.String())
	}
	_ = os.Chmod(cfg.DataDir, 0o755)
	_ = os.Chmod(filepath.Join(cfg.DataDir, e2ee.PickleKeyFile), 0o644)
	_ = os.Chmod(filepath.Join(cfg.Recordings.Dir, "call2"), 0o755)
	checkModes(zerolog.New(&buf), cfg)
	out := buf.String()
	for _, want := range []string{`"path":"` + cfg.DataDir + `"`, e2ee.PickleKeyFile, `"folders":1`, "call2"} {
		if !strings.Contains(out, want) {
			t.Errorf("no warning with %q:\n%s", want, out)
		}
	}
	// An operator's wider recordings.dir_mode is not a warning.
	buf.Reset()
	cfg.Recordings.DirMode = 0o755
	_ = os.Chmod(cfg.DataDir, 0o700)
	_ = os.Chmod(filepath.Join(cfg.DataDir, e2ee.PickleKeyFile), 0o600)
	checkModes(zerolog.New(&buf), cfg)
	if buf.Len() != 0 {
		t.Errorf("configured modes reported: %s", buf.String())
	}
}

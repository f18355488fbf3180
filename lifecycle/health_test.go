package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runChecks runs the lifecycle's checks and returns the failures by name.
func runChecks(e *env) map[string]string {
	out := map[string]string{}
	for _, c := range e.lc.HealthChecks() {
		if err := c.Run(context.Background()); err != nil {
			out[c.Name] = err.Error()
		}
	}
	return out
}

// A recordings folder that cannot take a file (here a file where the folder should be,
// which stops root as well) fails the check by name; the probe writes at most every
// probeEvery, so the folder's repair shows after that.
func TestHealthRecordingsDirNotWritable(t *testing.T) {
	e := newEnv(t, nil)
	if f := runChecks(e); len(f) != 0 {
		t.Fatalf("a fresh setup fails %v", f)
	}
	dir := e.lc.cfg.Recordings.Dir
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f := runChecks(e); f["recordings_dir"] != "" {
		t.Fatalf("the probe ran again within %s: %v", probeEvery, f)
	}
	e.advance(probeEvery)
	f := runChecks(e)
	if !strings.Contains(f["recordings_dir"], "recordings.dir is not writable") || len(f) != 1 {
		t.Fatalf("failures %v, want recordings_dir only", f)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if f := runChecks(e); f["recordings_dir"] == "" {
		t.Error("the failure was not kept until the next probe")
	}
	e.advance(probeEvery)
	if f := runChecks(e); len(f) != 0 {
		t.Errorf("after the repair: %v", f)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("the probe left %d file(s) in the folder", len(entries))
	}
}

// A read-only folder (for a user the permissions apply to) and a removed one fail too.
func TestHealthRecordingsDirReadOnlyOrGone(t *testing.T) {
	e := newEnv(t, nil)
	dir := e.lc.cfg.Recordings.Dir
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	if f, err := os.CreateTemp(dir, "x"); err == nil {
		// root: permissions do not stop it.
		f.Close()
		os.Remove(f.Name())
	} else if f := runChecks(e); !strings.Contains(f["recordings_dir"], "permission denied") {
		t.Errorf("read-only folder: %v", f)
	}
	_ = os.Chmod(dir, 0o700)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	e.advance(probeEvery)
	if f := runChecks(e); !strings.Contains(f["recordings_dir"], "no such file") {
		t.Errorf("removed folder: %v", f)
	}
	if _, err := os.Stat(filepath.Join(dir)); err == nil {
		t.Error("the probe created the folder again")
	}
}

// Below recordings.min_free_space (where recordings stop) the disk check fails.
func TestHealthDiskSpace(t *testing.T) {
	e := newEnv(t, nil)
	e.setFree(int64(e.lc.cfg.Recordings.MinFreeSpace) - 1)
	if f := runChecks(e); !strings.Contains(f["disk_space"], "less than recordings.min_free_space") || len(f) != 1 {
		t.Errorf("failures %v, want disk_space only", f)
	}
}

package datadir

import (
	"os"
	"path/filepath"
	"testing"
)

// Generated once, kept in data_dir (private), the same on every later start; a configured
// id wins and is not written.
func TestInstanceID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	id, err := InstanceID(dir, "")
	if err != nil || !instanceID.MatchString(id) {
		t.Fatalf("generated %q %v", id, err)
	}
	fi, err := os.Stat(filepath.Join(dir, InstanceFile))
	if err != nil || fi.Mode().Perm() != FileMode {
		t.Fatalf("kept file: %v %v", fi, err)
	}
	again, err := InstanceID(dir, "")
	if err != nil || again != id {
		t.Errorf("second start: %q %v, want %q", again, err, id)
	}
	if got, err := InstanceID(dir, "rec-2"); err != nil || got != "rec-2" {
		t.Errorf("configured: %q %v", got, err)
	}
	if got, _ := InstanceID(dir, ""); got != id {
		t.Errorf("a configured id replaced the kept one: %q", got)
	}
	if _, err := InstanceID(dir, "no spaces"); err == nil {
		t.Error("accepted an invalid configured id")
	}
	other, err := InstanceID(t.TempDir(), "")
	if err != nil || other == id {
		t.Errorf("another data_dir: %q %v (first %q)", other, err, id)
	}
	if err := os.WriteFile(filepath.Join(dir, InstanceFile), []byte("bad id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := InstanceID(dir, ""); err == nil {
		t.Error("accepted a damaged instance-id file")
	}
}

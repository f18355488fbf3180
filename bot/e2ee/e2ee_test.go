package e2ee

import (
	"os"
	"path/filepath"
	"testing"
)

// The pickle key is generated once into data_dir (private) and reused; a configured one wins.
func TestPickleKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := PickleKey("", dir)
	if err != nil || len(k1) != 64 {
		t.Fatalf("generated %q, %v", k1, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, PickleKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	if k2, err := PickleKey("", dir); err != nil || string(k2) != string(k1) {
		t.Errorf("second start: %q %v, want the same key", k2, err)
	}
	if k3, err := PickleKey("configured", dir); err != nil || string(k3) != "configured" {
		t.Errorf("configured: %q %v", k3, err)
	}
}

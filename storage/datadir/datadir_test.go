package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/storage/lockfile"
)

// Secrets land 0600 even when an older file was wider, and data_dir is taken by one
// recorder.
func TestSecretFileAndLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecret(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o", fi.Mode().Perm())
	}
	data := filepath.Join(dir, "data")
	l, err := Lock(data)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if fi, _ := os.Stat(data); fi.Mode().Perm() != 0o700 {
		t.Errorf("data_dir mode %04o", fi.Mode().Perm())
	}
	var held *lockfile.HeldError
	if _, err := Lock(data); !errors.As(err, &held) {
		t.Errorf("second lock: %v", err)
	}
	db := filepath.Join(dir, "state.db")
	if err := CreatePrivate(db); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(db); fi.Mode().Perm() != 0o600 {
		t.Errorf("new private file mode %04o", fi.Mode().Perm())
	}
	if err := CreatePrivate(db); err != nil {
		t.Errorf("an existing file: %v", err)
	}
}

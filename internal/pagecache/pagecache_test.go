package pagecache

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A file just written has dirty pages; after an fsync it has none.
func TestDirty(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1<<20)
	_, _ = rand.Read(b)
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	n, err := Dirty(f)
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Skip("the kernel wrote the file out at once; nothing to tell")
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if n, err := Dirty(f); err != nil || n != 0 {
		t.Fatalf("after fsync: %d dirty pages, %v", n, err)
	}
}

// Package pagecache tells tests how many pages of a file the kernel holds dirty (written
// by the program, not yet handed to the disk), so that they can check that a writer
// starts writing its file out instead of leaving it all to the fsync that closes it.
package pagecache

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// ErrUnsupported means the kernel cannot say: not Linux, a kernel before 6.5 (no
// cachestat), or a file system without writeback (tmpfs).
var ErrUnsupported = errors.New("the kernel cannot say how many pages of this file are dirty")

// Dirty returns how many pages of f are dirty.
func Dirty(f *os.File) (uint64, error) { return dirty(f) }

// RequireDirty skips the test when the kernel cannot tell f's dirty pages, or f has none
// (the kernel wrote it out already, so the test would prove nothing).
func RequireDirty(t testing.TB, f *os.File) {
	t.Helper()
	n, err := Dirty(f)
	switch {
	case errors.Is(err, ErrUnsupported):
		t.Skip(err)
	case err != nil:
		t.Fatal(err)
	case n == 0:
		t.Skip("the kernel wrote the file out already; nothing to tell")
	}
}

// DirtyFile creates a file in t's temporary folder with 1 MiB just written to it, so
// that it has dirty pages (RequireDirty: the test is skipped when the kernel cannot say,
// or wrote it out at once). The file is closed when the test ends.
func DirtyFile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "dirty"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	b := make([]byte, 1<<20)
	_, _ = rand.Read(b)
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	RequireDirty(t, f)
	return f
}

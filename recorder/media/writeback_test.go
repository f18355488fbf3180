package media_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/internal/pagecache"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// StartWriteback hands every dirty page of the file to the disk: none is left dirty for
// the fsync that closes the file. (Without it the kernel keeps them for up to 30 s.)
func TestStartWriteback(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "media"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1<<20)
	_, _ = rand.Read(b)
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	pagecache.RequireDirty(t, f)
	media.StartWriteback(f)
	if n, err := pagecache.Dirty(f); err != nil || n != 0 {
		t.Fatalf("after StartWriteback: %d dirty pages, %v", n, err)
	}
	media.StartWriteback(nil) // does nothing
}

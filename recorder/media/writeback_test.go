package media_test

import (
	"testing"

	"github.com/matrix-recorder/matrix-recorder/internal/pagecache"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// StartWriteback hands every dirty page of the file to the disk: none is left dirty for
// the fsync that closes the file. (Without it the kernel keeps them for up to 30 s.)
func TestStartWriteback(t *testing.T) {
	f := pagecache.DirtyFile(t)
	media.StartWriteback(f)
	if n, err := pagecache.Dirty(f); err != nil || n != 0 {
		t.Fatalf("after StartWriteback: %d dirty pages, %v", n, err)
	}
	media.StartWriteback(nil) // does nothing
}

package pagecache

import "testing"

// A file just written has dirty pages; after an fsync it has none.
func TestDirty(t *testing.T) {
	f := DirtyFile(t)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if n, err := Dirty(f); err != nil || n != 0 {
		t.Fatalf("after fsync: %d dirty pages, %v", n, err)
	}
}

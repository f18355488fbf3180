package lifecycle

import (
	"crypto/sha256"
	"testing"
)

// TestManifestCopiesStoreOnlyChanges: snapshot stores a live recording's manifest when
// its bytes changed since the last copy, not every time; a recording that stops being
// live here is forgotten, so it is stored again if it comes back.
func TestManifestCopiesStoreOnlyChanges(t *testing.T) {
	var c manifestCopies
	a, b := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	if !c.changed("f", a) {
		t.Fatal("a first manifest counts as unchanged")
	}
	c.stored("f", a)
	if c.changed("f", a) {
		t.Error("the same bytes count as changed")
	}
	if !c.changed("f", b) || !c.changed("g", a) {
		t.Error("new bytes, or another folder, count as unchanged")
	}
	c.keepOnly(map[string]bool{"g": true})
	if !c.changed("f", a) {
		t.Error("a folder that is no longer live is still remembered")
	}
}

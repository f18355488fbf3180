package recorder

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSanitize(t *testing.T) {
	for _, in := range []string{"../../x", "..", ".", "", "a/b", "a\\b", "\x00", strings.Repeat("A", 500), "ÄÖÜ", ".hidden", "con:1", "a b\nc"} {
		out := Sanitize(in)
		if out == "" || out == "." || out == ".." || strings.ContainsAny(out, "/\\\x00 :\n") || strings.HasPrefix(out, ".") {
			t.Errorf("Sanitize(%q) = %q is not a safe name", in, out)
		}
		if len(out) > maxNameComponent+7 {
			t.Errorf("Sanitize(%q) too long: %d", in, len(out))
		}
		if filepath.Base(out) != out {
			t.Errorf("Sanitize(%q) = %q is not a single path element", in, out)
		}
	}
	if got := Sanitize("DEVICEID_1.2-x"); got != "DEVICEID_1.2-x" {
		t.Errorf("a clean id changed: %q", got)
	}
	if Sanitize("a/b") == Sanitize("a_b") || Sanitize("a b") == Sanitize("a/b") {
		t.Errorf("different ids collide after sanitizing")
	}
}

func TestUserAndRoomNames(t *testing.T) {
	if got := UserName("@alice:example.org"); got != "alice_example.org" {
		t.Errorf("UserName = %q", got)
	}
	if got := UserName("@alice:localhost:8448"); got != "alice_localhost_8448" {
		t.Errorf("UserName with port = %q", got)
	}
	if got := UserName("@../../etc:passwd"); strings.Contains(got, "/") || strings.HasPrefix(got, ".") {
		t.Errorf("UserName hostile = %q", got)
	}
	if got := RoomName("!AbCd:example.org"); got != "AbCd" {
		t.Errorf("RoomName = %q", got)
	}
	start := time.Date(2026, 11, 22, 1, 2, 3, 0, time.FixedZone("x", 3600))
	if got := FolderName(start, "!r:hs", "../../x"); !strings.HasPrefix(got, "20261122T000203Z_r_") || strings.Contains(got, "/") {
		t.Errorf("FolderName = %q", got)
	}
}

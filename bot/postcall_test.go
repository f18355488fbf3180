package bot

import (
	"strings"
	"testing"
	"time"
)

func TestMarkerText(t *testing.T) {
	for in, want := range map[string]string{
		"intro done":                "intro done",
		"  a\n\tb\x07c\u202edrop  ": "a b c drop",
		"family 👨\u200d👩\u200d👧 ok": "family 👨\u200d👩\u200d👧 ok",
		"":                          "",
	} {
		if got := markerText(in); got != want {
			t.Errorf("markerText(%q) = %q, want %q", in, got, want)
		}
	}
	if got := markerText(strings.Repeat("é", 1000)); len([]rune(got)) != maxMarkerRunes {
		t.Errorf("long marker kept %d runes", len([]rune(got)))
	}
}

func TestMarkBack(t *testing.T) {
	d, rest := markBack([]string{"-30s", "great", "answer"})
	if d != 30*time.Second || strings.Join(rest, " ") != "great answer" {
		t.Errorf("-30s: %v %q", d, rest)
	}
	for _, args := range [][]string{{"-5h", "x"}, {"-nonsense"}, {"-0s"}, {"intro"}} {
		if d, rest := markBack(args); d != 0 || len(rest) != len(args) {
			t.Errorf("%q: %v %q", args, d, rest)
		}
	}
}

func TestMarkCounts(t *testing.T) {
	var m markCounts
	for i := 0; i < maxMarkers; i++ {
		if !m.take([]string{"a"}) {
			t.Fatalf("marker %d refused", i)
		}
	}
	if m.take([]string{"a"}) || m.take([]string{"b", "a"}) {
		t.Error("marker beyond the limit accepted")
	}
	if !m.take([]string{"b"}) {
		t.Error("another recording refused")
	}
}

package call

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
		if got := MarkerText(in); got != want {
			t.Errorf("MarkerText(%q) = %q, want %q", in, got, want)
		}
	}
	if got := MarkerText(strings.Repeat("é", 1000)); len([]rune(got)) != MaxMarkerRunes {
		t.Errorf("long marker kept %d runes", len([]rune(got)))
	}
}

func TestMarkBack(t *testing.T) {
	d, rest := MarkBack([]string{"-30s", "great", "answer"})
	if d != 30*time.Second || strings.Join(rest, " ") != "great answer" {
		t.Errorf("-30s: %v %q", d, rest)
	}
	for _, args := range [][]string{{"-5h", "x"}, {"-nonsense"}, {"-0s"}, {"intro"}} {
		if d, rest := MarkBack(args); d != 0 || len(rest) != len(args) {
			t.Errorf("%q: %v %q", args, d, rest)
		}
	}
}

func TestMarkCounts(t *testing.T) {
	var m MarkCounts
	for i := 0; i < MaxMarkers; i++ {
		if !m.Take([]string{"a"}) {
			t.Fatalf("marker %d refused", i)
		}
	}
	if m.Take([]string{"a"}) || m.Take([]string{"b", "a"}) {
		t.Error("marker beyond the limit accepted")
	}
	if !m.Take([]string{"b"}) {
		t.Error("another recording refused")
	}
}

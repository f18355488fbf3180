package main

import (
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

func TestUncovered(t *testing.T) {
	s := time.Second
	for _, c := range []struct {
		name   string
		spans  []span
		lo, hi time.Duration
		want   time.Duration
	}{
		{"none", nil, 0, 10 * s, 10 * s},
		{"whole", []span{{-s, 11 * s}}, 0, 10 * s, 0},
		{"a hole", []span{{7 * s, 12 * s}, {0, 4 * s}}, s, 10 * s, 3 * s},
		{"overlapping parts count once", []span{{0, 6 * s}, {5 * s, 10 * s}}, 0, 10 * s, 0},
		{"outside the interval", []span{{-5 * s, -s}, {11 * s, 20 * s}}, 0, 10 * s, 10 * s},
	} {
		if got := uncovered(c.spans, c.lo, c.hi); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestTimelineHole(t *testing.T) {
	m := &recorder.Manifest{Tracks: []recorder.FileEntry{
		{UserID: "@a:x", Kind: "audio", StartOffsetMs: 40000, DurationMs: 5000},
		{UserID: "@a:x", Kind: "audio", StartOffsetMs: 700, DurationMs: 31000},
		{UserID: "@a:x", Kind: "video", StartOffsetMs: 900, DurationMs: 30000},
		{UserID: "@a:x", Kind: "video", StartOffsetMs: 32000, DurationMs: 5000},
		{UserID: "@b:x", Kind: "audio", StartOffsetMs: 700, DurationMs: 44000},
	}}
	if got, want := timelineHole(m), 8300*time.Millisecond; got != want {
		t.Errorf("hole %v, want %v", got, want)
	}
}

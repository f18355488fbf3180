package egress

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// Everyone in an Egress recording is told: who is there at the start by the start notice
// (the bot's), who joins later by a notice of their own, once; a composite offers no
// opt-out, since it mixes everyone.
func TestLateJoinersToldInEgress(t *testing.T) {
	for _, mode := range []string{"tracks", "composite"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, nil)
			h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a1")))
			r := startTracks(t, h, "room1", mode)
			r.sync(r.poll)
			h.api.setRoom("room1", participant("ann", "Ann", mic("TR_a1")), participant("bob", "Bob", mic("TR_b1")))
			r.sync(r.poll)
			r.sync(r.poll)
			n := h.mx.waitNotice(t, "joined the call, which is being recorded")
			if !strings.HasPrefix(n, "Bob ") || strings.Contains(n, "skipme") != (mode == "tracks") {
				t.Errorf("notice %q", n)
			}
			time.Sleep(50 * time.Millisecond)
			h.mx.mu.Lock()
			defer h.mx.mu.Unlock()
			joins := slices.DeleteFunc(slices.Clone(h.mx.notices), func(s string) bool { return !strings.Contains(s, "joined the call") })
			if len(joins) != 1 {
				t.Errorf("join notices %q: want one, for Bob only", joins)
			}
		})
	}
}

package call

import (
	"strings"
	"sync"
	"time"
	"unicode"
)

// MaxMarkerRunes bounds a marker's text; MaxMarkers bounds the markers of one recording.
const (
	MaxMarkerRunes = 200
	MaxMarkers     = 500
)

// MarkCounts counts the markers set per recording (call folder), to bound them. The zero
// value is ready.
type MarkCounts struct {
	mu sync.Mutex
	n  map[string]int
}

// Take counts one marker for each folder, unless one of them is full.
func (m *MarkCounts) Take(folders []string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil || len(m.n) > 10000 {
		m.n = map[string]int{} // forget old recordings now and then
	}
	for _, f := range folders {
		if m.n[f] >= MaxMarkers {
			return false
		}
	}
	for _, f := range folders {
		m.n[f]++
	}
	return true
}

// MarkerText makes a marker's text safe to store and show: one line, printable, bounded.
func MarkerText(s string) string {
	var b strings.Builder
	n := 0
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || (unicode.Is(unicode.Cf, r) && r != '\u200d') {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
		if n++; n >= MaxMarkerRunes {
			break
		}
	}
	return b.String()
}

// MarkBack parses an optional "-30s" / "-2m" first word of a marker command: the marker
// goes that far back (at most an hour). It returns the rest of the words.
func MarkBack(args []string) (time.Duration, []string) {
	if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return 0, args
	}
	d, err := time.ParseDuration(args[0][1:])
	if err != nil || d <= 0 || d > time.Hour {
		return 0, args
	}
	return d, args[1:]
}

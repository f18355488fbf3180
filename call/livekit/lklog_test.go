package livekit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// The SDK's levels land one lower in zerolog: info and warnings at debug, debug at trace,
// errors as warnings; names and values stay with the line.
func TestLKLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	l := lkLogger(zerolog.New(&buf).Level(zerolog.TraceLevel)).WithName("engine").WithValues("room", "r1")
	l.Infow("joined", "participant", "p")
	l.Warnw("slow", errors.New("late"))
	l.Debugw("packet")
	l.Errorw("failed", errors.New("boom"))
	want := []struct{ level, msg string }{{"debug", "joined"}, {"debug", "slow"}, {"trace", "packet"}, {"warn", "failed"}}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	for i, line := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatal(err)
		}
		if v["level"] != want[i].level || v["message"] != want[i].msg || v["room"] != "r1" || v["logger"] != "engine" {
			t.Errorf("line %d: %s, want level %s", i, line, want[i].level)
		}
	}
	if !strings.Contains(lines[3], `"error":"boom"`) || !strings.Contains(lines[1], `"error":"late"`) {
		t.Errorf("errors lost:\n%s", buf.String())
	}

	// At info level the SDK says nothing; at debug only its info and warnings.
	buf.Reset()
	l = lkLogger(zerolog.New(&buf).Level(zerolog.InfoLevel))
	l.Infow("joined")
	l.Debugw("packet")
	if buf.Len() != 0 {
		t.Errorf("at info level: %s", buf.String())
	}
	l.Errorw("failed", nil)
	if !strings.Contains(buf.String(), `"level":"warn"`) {
		t.Errorf("an error at info level: %q", buf.String())
	}
}

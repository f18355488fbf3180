package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
)

// samples makes one sample a minute with the given anonymous resident sets (MiB).
func samples(anon ...int64) []soakSample {
	out := make([]soakSample, len(anon))
	for i, a := range anon {
		out[i] = soakSample{At: time.Duration(i) * time.Minute, RSSAnon: a << 20, RSS: (a + 37) << 20, RSSFile: 37 << 20, GCGoal: 25 << 20, Goroutines: 485, Threads: 10}
	}
	return out
}

// hour is an hour's samples: from 32 MiB at minute 1 up to 40 at minute 15, then flat
// up to 41 at minute 60 (the warm-up of the 19:42 soak, not a leak).
func hour() []soakSample {
	anon := make([]int64, 61)
	for i := range anon {
		switch {
		case i <= 1:
			anon[i] = 32
		case i < 15:
			anon[i] = 32 + int64(i-1)*8/14
		case i < 60:
			anon[i] = 40
		default:
			anon[i] = 41
		}
	}
	return samples(anon...)
}

func endedCalls(n int, hangup time.Time) []soakCall {
	out := make([]soakCall, n)
	for i := range out {
		at := hangup.Add(-time.Duration(n-1-i) * 100 * time.Millisecond)
		out[i] = soakCall{callEnd: callEnd{ID: "c" + string(rune('a'+i)), Status: "finished", FinalAt: at.Add(90 * time.Millisecond), FinishedAt: at.Add(5 * time.Second)},
			HangupTries: 1, HangupAt: at, ClosedAt: at}
	}
	return out
}

func TestSoakJudgeWarmupAgainstFirstInterval(t *testing.T) {
	hangup := time.Date(2026, 12, 7, 0, 45, 0, 0, time.UTC)
	r := soakResult{Calls: 3, Duration: time.Hour, Interval: time.Minute, Samples: hour(), Ends: endedCalls(3, hangup), LastHangup: hangup,
		Files: fileCheck{Calls: 3, Whole: 3, Files: 6}}
	r.judge()
	if got := r.Samples[r.Warm].At; got != 15*time.Minute {
		t.Errorf("warm-up sample at %v, want 15m", got)
	}
	if r.AnonGrowth < 0.28 || r.AnonGrowth > 0.29 {
		t.Errorf("growth from the first interval %.3f, want 41/32-1", r.AnonGrowth)
	}
	if r.WarmAnonGrowth < 0.024 || r.WarmAnonGrowth > 0.026 {
		t.Errorf("growth from minute 15 %.3f, want 41/40-1", r.WarmAnonGrowth)
	}
	if len(r.Failed) != 1 || !strings.Contains(r.Failed[0], "anonymous resident set grew 28.1% after the first interval") {
		t.Errorf("failed %q, want only the growth from the first interval", r.Failed)
	}
	if r.FinalAfter != 90*time.Millisecond || r.FinishedAfter != 5*time.Second || r.Accepted != 3 {
		t.Errorf("final after %v, finished after %v, %d accepted", r.FinalAfter, r.FinishedAfter, r.Accepted)
	}
}

func TestSoakJudgeFlatPasses(t *testing.T) {
	r := soakResult{Calls: 2, Duration: 3 * time.Minute, Interval: 30 * time.Second, Files: fileCheck{Calls: 2, Whole: 2}}
	r.Samples = samples(25, 33, 34, 33, 33, 34, 34)
	for i := range r.Samples {
		r.Samples[i].At = time.Duration(i) * 30 * time.Second
	}
	r.Ends = endedCalls(2, time.Now())
	r.LastHangup = r.Ends[1].HangupAt
	r.Samples[3].Goroutines = 490 // a request in flight at one sample is no leak
	r.judge()
	if len(r.Failed) != 0 {
		t.Errorf("failed %q", r.Failed)
	}
	if got := r.Samples[r.Warm].At; got != time.Minute {
		t.Errorf("a 3-minute run's warm-up sample at %v, want the first at a quarter of it (1m)", got)
	}
	if r.GoroutinesMax != 490 || r.GoroutineGrowth != 0 {
		t.Errorf("goroutines max %d, growth %d", r.GoroutinesMax, r.GoroutineGrowth)
	}
}

// A call whose hang-up the homeserver never accepted and that the bot did not end fails
// the soak, is listed, and does not count for the time from the last accepted hang-up.
func TestSoakCallNotEnded(t *testing.T) {
	hangup := time.Date(2026, 12, 7, 0, 45, 0, 0, time.UTC)
	r := soakResult{Calls: 3, Duration: time.Hour, Interval: time.Minute, Samples: samples(30, 32, 32, 32), Files: fileCheck{Calls: 3, Whole: 3, Files: 6}}
	r.Ends = endedCalls(3, hangup)
	r.Ends[0].HangupTries, r.Ends[0].HangupErr, r.Ends[0].HangupAt = 9, "M_UNKNOWN (HTTP 500)", time.Time{}
	r.Ends[0].ClosedAt = hangup.Add(2 * time.Minute)
	r.Ends[0].FinalAt, r.Ends[0].FinishedAt, r.Ends[0].Status, r.Ends[0].Recording = time.Time{}, time.Time{}, "recording", 2
	r.Ends[1].HangupTries = 3 // accepted after retries
	r.LastHangup = hangup
	r.judge()
	if r.Accepted != 2 || r.FinalAfter != 90*time.Millisecond {
		t.Errorf("%d accepted, final after %v", r.Accepted, r.FinalAfter)
	}
	if len(r.Failed) != 1 || !strings.Contains(r.Failed[0], "1 of 3 calls not ended") {
		t.Errorf("failed %q", r.Failed)
	}
	rep := report{opts: options{args: []string{"-parts", "soak"}}, started: hangup, partLoad: map[string]float64{}, soak: &r}
	md := rep.soakSection()
	for _, want := range []string{
		"Result: **failed**: 1 of 3 calls not ended",
		"- Hang-ups: 1 of 3 accepted at the first try, 1 after retries, 1 never accepted.",
		"- Files final 0.09 s after the last accepted hang-up (2 calls; goal ≤ 1 s ✓",
		"- Calls ended by the bot: 2 of 3",
		"| `ca` | 9 | M_UNKNOWN (HTTP 500) | recording | 2 | not seen | not seen |",
		"| `cb` | 3 | (accepted) | finished | 0 | 0.09 s | 5.00 s |",
		"- Anonymous resident set: +0.0% from the first interval (32.0 MiB at 1m0s → 32.0 MiB at 3m0s; goal < 5% ✓), +0.0% from 3m0s",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("section lacks %q:\n%s", want, md)
		}
	}
}

// Stopped early (the bot's /proc gone): what was measured is still judged and written.
func TestSoakStoppedEarlyStillReports(t *testing.T) {
	r := soakResult{Calls: 1, Duration: time.Hour, Interval: time.Minute, Samples: samples(30, 32), Stopped: "the bot's /proc: no such process"}
	r.judge()
	if len(r.Failed) != 2 || !strings.Contains(r.Failed[0], "stopped before the end") {
		t.Errorf("failed %q", r.Failed)
	}
	md := report{started: time.Now(), partLoad: map[string]float64{}, soak: &r}.soakSection()
	if !strings.Contains(md, "| 1m0s |") || !strings.Contains(md, "stopped before the end: the bot's /proc") {
		t.Errorf("section:\n%s", md)
	}
}

func TestRetryHangup(t *testing.T) {
	e500 := mautrix.HTTPError{Response: &http.Response{StatusCode: 500}}
	e403 := mautrix.HTTPError{Response: &http.Response{StatusCode: 403}}
	noWait := func(int) time.Duration { return 0 }
	for _, c := range []struct {
		name      string
		errs      []error
		bound     time.Duration
		wantTries int
		wantErr   error
	}{
		{"accepted at once", []error{nil}, time.Minute, 1, nil},
		{"500s then accepted", []error{e500, e500, nil}, time.Minute, 3, nil},
		{"a timed-out try is retried", []error{errTryTimedOut, nil}, time.Minute, 2, nil},
		{"403 is for good", []error{e403, nil}, time.Minute, 1, e403},
		{"gives up at the bound", []error{e500, e500, e500}, 0, 1, e500},
	} {
		n, refusals := 0, 0
		tries, err := retry(context.Background(), c.bound, noWait, func() error {
			n++
			if n > len(c.errs) {
				return c.errs[len(c.errs)-1]
			}
			return c.errs[n-1]
		}, func(int, error) { refusals++ })
		if tries != c.wantTries || tries != n || !errors.Is(err, c.wantErr) && err != c.wantErr {
			t.Errorf("%s: %d tries (%d calls), %v; want %d, %v", c.name, tries, n, err, c.wantTries, c.wantErr)
		}
		if refusals != tries-1 && c.wantErr == nil {
			t.Errorf("%s: %d refusals told for %d tries", c.name, refusals, tries)
		}
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{e500, true},
		{mautrix.HTTPError{Response: &http.Response{StatusCode: 429}}, true},
		{e403, false},
		{mautrix.HTTPError{WrappedError: errors.New("connection reset by peer")}, true},
		{mautrix.HTTPError{WrappedError: context.Canceled}, false},
	} {
		if got := passing(c.err); got != c.want {
			t.Errorf("passing(%v) = %v", c.err, got)
		}
	}
	if hangupBackoff(1) != time.Second || hangupBackoff(4) != 8*time.Second || hangupBackoff(9) != 10*time.Second {
		t.Errorf("backoff %v %v %v", hangupBackoff(1), hangupBackoff(4), hangupBackoff(9))
	}
}

// With the Go runtime's memory sampled, the section says how much of the anonymous
// resident set is Go's own and how much is the rest, at the base, the warm-up and the end.
func TestSoakSectionSplitsGoMemory(t *testing.T) {
	r := soakResult{Calls: 1, Duration: 4 * time.Minute, Interval: time.Minute, Samples: samples(26, 30, 32, 33, 34), Files: fileCheck{Calls: 1, Whole: 1}}
	for i := range r.Samples {
		r.Samples[i].HeapInuse, r.Samples[i].HeapKept, r.Samples[i].Stacks = 12<<20, int64(i)<<20, 2<<20
	}
	r.judge()
	md := report{started: time.Now(), partLoad: map[string]float64{}, soak: &r}.soakSection()
	for _, want := range []string{
		"Go's own memory (heap spans in use, free spans not yet returned, stacks): 15.0 MiB at 1m0s, 15.0 MiB at 1m0s, 18.0 MiB at the end; the rest of the anonymous resident set (C memory through cgo, the runtime's other structures): 15.0 MiB, 15.0 MiB, 16.0 MiB.",
		"| Anonymous less Go's |",
		"| 4m0s | 00:00:00 | 71.0 MiB | 34.0 MiB | 37.0 MiB | 25.0 MiB | 12.0 MiB | 4.0 MiB | 2.0 MiB | 16.0 MiB | 485 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("section lacks %q:\n%s", want, md)
		}
	}
}

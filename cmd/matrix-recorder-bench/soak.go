package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Part 5: the soak. The bot records calls for a long time (default an hour) while the
// bench samples its resident set and goroutines (go_goroutines from its /metrics) every
// interval; memory must stay flat after the first minute. What is judged is the bot's
// own memory, the anonymous part of its resident set: the rest (RssFile) is pages of the
// binary and the libraries it maps, which grow as code runs for the first time (a summary,
// an upload, an hourly notice) up to the binary's size and are shared and reclaimable, not
// a leak. Both are reported, with the Go heap's GC goal (twice the live heap at the last
// collection), which shows a leak in Go memory without the noise of the GC cycle.
//
// Whatever happens after the calls were placed (a sample that cannot be read, a hang-up
// the homeserver refuses, a call the bot does not end), the soak reports what it measured
// and says what went wrong, rather than nothing.

// Soak limits (issue 16): resident set growth after the first minute, and goroutines.
const soakMaxRSSGrowth = 0.05

// soakWarmup is where the growth after the warm-up is measured from (printed beside the
// judged growth from the first interval; not judged): minute 15, or a quarter of a shorter
// run.
const soakWarmup = 15 * time.Minute

// soakEndWait bounds the wait, from the hang-ups, for every call to end: the hang-ups'
// retries, then the bot's ICE timeout (30 s by default) for a caller whose hang-up never
// got through, then hashing every file.
const soakEndWait = hangupRetryFor + 5*time.Minute

type soakSample struct {
	At      time.Duration // since the calls were all recording
	Clock   time.Time
	RSS     int64
	RSSAnon int64
	RSSFile int64
	// GCGoal is go_memstats_next_gc_bytes: about twice the live heap after the last GC.
	GCGoal int64
	// The Go runtime's own memory (go_memstats_*; zero when the bot does not export it):
	// heap spans in use, free heap spans not yet returned to the OS (heap_idle −
	// heap_released), and goroutine stacks. RssAnon less these is, roughly, what is
	// not Go's heap or stacks (cgo's C memory, the runtime's other structures).
	HeapInuse  int64
	HeapKept   int64
	Stacks     int64
	Goroutines int
	Threads    int
	CPU        time.Duration // the bot's CPU time so far (since its start)
	Load       float64
}

// soakCall is how one call ended.
type soakCall struct {
	callEnd
	// HangupTries is how many times its m.call.hangup was sent; HangupErr the last
	// refusal when none was accepted; HangupAt when the accepted one was sent, ClosedAt
	// when the caller closed its connection.
	HangupTries int
	HangupErr   string
	HangupAt    time.Time
	ClosedAt    time.Time
}

// goOwn is the Go runtime's own memory at a sample: heap spans in use, free ones kept, stacks.
func (x soakSample) goOwn() int64 { return x.HeapInuse + x.HeapKept + x.Stacks }

// goMemory says whether the samples have the Go runtime's memory (the bot exports it).
func (r *soakResult) goMemory() bool {
	for _, x := range r.Samples {
		if x.HeapInuse > 0 {
			return true
		}
	}
	return false
}

func (c soakCall) accepted() bool { return c.HangupErr == "" && !c.HangupAt.IsZero() }
func (c soakCall) ended() bool    { return !c.FinishedAt.IsZero() }

type soakResult struct {
	Calls    int
	Duration time.Duration
	Interval time.Duration
	Samples  []soakSample
	// Skipped counts the samples that could not be read (the bot's /metrics did not
	// answer) and were left out.
	Skipped int
	// Base is the sample one interval in (the first minute), compared with the end.
	// AnonGrowth (the judged one) is of the anonymous resident set, RSSGrowth of all of it.
	AnonGrowth float64
	RSSGrowth  float64
	// Warm is the index of the first sample at soakWarmup (or a quarter of the run); the
	// Warm growths run from it to the end.
	Warm           int
	WarmAnonGrowth float64
	WarmRSSGrowth  float64
	// GoroutineGrowth is judged; GoroutinesMin and Max span every sample from the base.
	GoroutineGrowth int
	GoroutinesMin   int
	GoroutinesMax   int
	Lost            uint64
	Files           fileCheck
	// Ends says how each call ended, in the order placed.
	Ends []soakCall
	// LastHangup is when the last hang-up the homeserver accepted was sent. FinalAfter
	// runs from it until the files of every call whose hang-up was accepted were final
	// (their manifest entries complete), FinishedAfter until their manifests said
	// finished (the files' SHA-256 in them); each is set only when all those calls got
	// there (FinalCalls, FinishedCalls of Accepted). WorstFinal is the longest from a
	// call's own hang-up to its files final.
	LastHangup    time.Time
	Accepted      int
	FinalCalls    int
	FinishedCalls int
	FinalAfter    time.Duration
	FinishedAfter time.Duration
	WorstFinal    time.Duration
	// Heap lists what grew in the bot's live heap from the sample one interval in to the
	// end (go tool pprof -top -diff_base, in-use bytes), with -profile DIR.
	Heap      []profileLine
	HeapTotal string
	// BotLog is where the bot's log was copied (with -profile DIR).
	BotLog string
	Load   loadSpan
	// Stopped says why the soak did not run to its end ("": it did).
	Stopped string
	// Failed says which limit was broken (empty: passed).
	Failed []string
}

// runSoak returns an error only when the calls could not be set up; anything later
// ends up in res (Stopped, Failed).
func runSoak(ctx context.Context, cb *callBench, n int, d, interval time.Duration, prof *profiler, logf logFunc) (res soakResult, err error) {
	res = soakResult{Calls: n, Duration: d, Interval: interval}
	t := cb.bot
	if err := t.start(ctx); err != nil {
		return res, err
	}
	defer func() {
		if prof != nil {
			if path, cerr := copyFile(t.p.logPath, filepath.Join(prof.dir, "soak-bot.log")); cerr != nil {
				logf("soak: keeping the bot's log: %v", cerr)
			} else {
				res.BotLog = path
			}
		}
		if serr := t.stop(); serr != nil {
			logf("soak: stopping the bot: %v", serr)
			if len(res.Samples) == 0 {
				err = errors.Join(err, fmt.Errorf("stopping the bot: %w", serr))
			} else {
				res.Failed = append(res.Failed, "stopping the bot: "+serr.Error())
			}
		}
		t.clean()
	}()
	if err := cb.env.dms(ctx, t.user(), t.rooms(), n); err != nil {
		return res, err
	}
	logf("soak: placing %d calls", n)
	calls, err := cb.env.placeCalls(ctx, (*t.rooms())[:n])
	if err != nil {
		return res, err
	}
	hungUp := false
	defer func() {
		if !hungUp {
			closeCalls(calls)
		}
	}()
	if err := t.waitRecording(ctx, calls); err != nil {
		return res, err
	}
	start := time.Now()
	res.Load.Before = loadAvg()
	stop := func(why string) {
		if res.Stopped == "" {
			res.Stopped = why
			logf("soak: stopped: %s", why)
		}
	}
	sample := func() error {
		p, err := sampleProc(t.pid())
		if err != nil {
			return fmt.Errorf("the bot's /proc: %w", err)
		}
		m, err := t.p.metrics(ctx, "go_goroutines", "go_memstats_next_gc_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes",
			"go_memstats_heap_released_bytes", "go_memstats_stack_inuse_bytes")
		if err == nil {
			g, okG := m["go_goroutines"]
			goal, okGoal := m["go_memstats_next_gc_bytes"]
			if !okG || !okGoal {
				err = errors.New("the bot's /metrics has no go_goroutines or go_memstats_next_gc_bytes")
			} else {
				s := soakSample{At: time.Since(start).Round(time.Second), Clock: time.Now().UTC(), RSS: p.rss, RSSAnon: p.rssAnon, RSSFile: p.rssFile,
					GCGoal: int64(goal), HeapInuse: int64(m["go_memstats_heap_inuse_bytes"]),
					HeapKept:   int64(m["go_memstats_heap_idle_bytes"] - m["go_memstats_heap_released_bytes"]),
					Stacks:     int64(m["go_memstats_stack_inuse_bytes"]),
					Goroutines: int(g), Threads: threads(t.pid()), CPU: p.cpu, Load: loadAvg()}
				res.Samples = append(res.Samples, s)
				logf("soak: %v: RSS %s (anonymous %s, files %s), GC goal %s, %d goroutines, %d threads (load %.1f)", s.At, mib(s.RSS), mib(s.RSSAnon), mib(s.RSSFile),
					mib(s.GCGoal), s.Goroutines, s.Threads, s.Load)
				return nil
			}
		}
		res.Skipped++
		logf("soak: sample left out: %v", err)
		return nil
	}
	// With -profile, the live heap one interval in (the base) and at the end: what grew.
	var heaps []string
	heap := func(name string) {
		if prof == nil || t.pprofAddr() == "" {
			return
		}
		if path, err := prof.heap(ctx, t.pprofAddr(), name); err != nil {
			logf("soak: heap profile: %v", err)
		} else {
			heaps = append(heaps, path)
		}
	}
	if err := sample(); err != nil {
		stop(err.Error())
	}
	for k := 1; res.Stopped == "" && time.Duration(k)*interval <= d; k++ {
		select {
		case <-time.After(time.Until(start.Add(time.Duration(k) * interval))):
		case <-ctx.Done():
			stop(ctx.Err().Error())
			continue
		}
		if err := sample(); err != nil {
			stop(err.Error())
			continue
		}
		if k == 1 {
			heap("soak-base")
		}
	}
	res.Load.After = loadAvg()
	if ctx.Err() != nil {
		res.judge()
		return res, nil
	}
	heap("soak-end")
	if len(heaps) == 2 {
		if res.Heap, res.HeapTotal, err = topFunctions(ctx, heaps[1:], false, 15, "-sample_index=inuse_space", "-diff_base="+heaps[0]); err != nil {
			logf("soak: heap growth: %v", err)
		}
	}

	// Watch the manifests from before the first hang-up, so that a call that ends while
	// another's hang-up is still being retried is timed when it ends.
	type watched struct {
		ends []callEnd
		err  error
	}
	watch := make(chan watched, 1)
	go func() {
		ends, err := t.watchEnds(ctx, calls, soakEndWait)
		watch <- watched{ends, err}
	}()
	logf("soak: hanging up")
	res.LastHangup = cb.env.hangUp(ctx, calls)
	hungUp = true
	w := <-watch
	if w.err != nil {
		logf("soak: %v", w.err)
	}
	res.Ends = make([]soakCall, len(calls))
	for i, c := range calls {
		e := soakCall{callEnd: w.ends[i], HangupTries: c.hangupTries, ClosedAt: c.hungUp}
		if c.hangupErr != nil {
			e.HangupErr = c.hangupErr.Error()
		} else {
			e.HangupAt = c.hangupSent
		}
		res.Ends[i] = e
	}
	results := make([]callResult, len(calls))
	for i, c := range calls {
		var err error
		if results[i], err = t.result(c); err != nil {
			logf("soak: call %s: %v", c.id, err)
		}
		res.Lost += results[i].Lost
	}
	logf("soak: checking the calls' files with ffprobe")
	res.Files = checkCalls(ctx, calls, results)
	res.judge()
	return res, nil
}

// copyFile copies src to dst (made with its folder) and returns dst.
func copyFile(src, dst string) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	return dst, os.WriteFile(dst, b, 0o644)
}

// warmIndex is the first sample at soakWarmup, or at a quarter of a run shorter than
// four times that (never before the sample one interval in).
func (r *soakResult) warmIndex() int {
	at := min(soakWarmup, r.Duration/4)
	for i, s := range r.Samples {
		if i >= 1 && s.At >= at {
			return i
		}
	}
	return max(1, len(r.Samples)-1)
}

func growth(from, to int64) float64 { return float64(to-from) / float64(max(from, 1)) }

// judge compares the end with the sample one interval in. Goroutines are judged on the
// least of the last three samples, so that one HTTP connection or sync request in flight
// at a sample is not taken for a leak; a leak raises all three. It also sums up how the
// calls ended (ends) and fails the soak for a call not ended or not recorded whole.
func (r *soakResult) judge() {
	if r.Stopped != "" {
		r.Failed = append(r.Failed, "stopped before the end: "+r.Stopped)
	}
	r.ends()
	if len(r.Samples) < 3 {
		r.Failed = append(r.Failed, fmt.Sprintf("only %d samples: run longer than two intervals", len(r.Samples)))
	} else {
		base, end := r.Samples[1], r.Samples[len(r.Samples)-1]
		r.RSSGrowth = growth(base.RSS, end.RSS)
		r.AnonGrowth = growth(base.RSSAnon, end.RSSAnon)
		r.Warm = r.warmIndex()
		warm := r.Samples[r.Warm]
		r.WarmRSSGrowth = growth(warm.RSS, end.RSS)
		r.WarmAnonGrowth = growth(warm.RSSAnon, end.RSSAnon)
		least := end.Goroutines
		for _, s := range r.Samples[max(1, len(r.Samples)-3):] {
			least = min(least, s.Goroutines)
		}
		r.GoroutineGrowth = least - base.Goroutines
		r.GoroutinesMin, r.GoroutinesMax = base.Goroutines, base.Goroutines
		for _, s := range r.Samples[1:] {
			r.GoroutinesMin, r.GoroutinesMax = min(r.GoroutinesMin, s.Goroutines), max(r.GoroutinesMax, s.Goroutines)
		}
		if r.AnonGrowth > soakMaxRSSGrowth {
			r.Failed = append(r.Failed, fmt.Sprintf("the anonymous resident set grew %.1f%% after the first interval (limit %.0f%%)", 100*r.AnonGrowth, 100*soakMaxRSSGrowth))
		}
		if r.GoroutineGrowth > 0 {
			r.Failed = append(r.Failed, fmt.Sprintf("goroutines grew by %d after the first interval", r.GoroutineGrowth))
		}
	}
	if r.Ends == nil {
		return
	}
	if notEnded := r.Calls - r.countEnds(soakCall.ended); notEnded > 0 {
		r.Failed = append(r.Failed, fmt.Sprintf("%d of %d calls not ended by the bot within %v of the hang-ups", notEnded, r.Calls, soakEndWait))
	}
	if r.Files.Whole != r.Calls {
		r.Failed = append(r.Failed, fmt.Sprintf("%d of %d calls recorded whole", r.Files.Whole, r.Calls))
	}
}

func (r *soakResult) countEnds(f func(soakCall) bool) int {
	n := 0
	for _, e := range r.Ends {
		if f(e) {
			n++
		}
	}
	return n
}

// ends sums up the calls whose hang-up the homeserver accepted: how long after the last
// of those hang-ups their files were final and their manifests finished.
func (r *soakResult) ends() {
	r.Accepted, r.FinalCalls, r.FinishedCalls = 0, 0, 0
	r.FinalAfter, r.FinishedAfter, r.WorstFinal = 0, 0, 0
	var final, finished time.Time
	for _, e := range r.Ends {
		if !e.accepted() {
			continue
		}
		r.Accepted++
		if !e.FinalAt.IsZero() {
			r.FinalCalls++
			final = later(final, e.FinalAt)
			r.WorstFinal = max(r.WorstFinal, e.FinalAt.Sub(e.HangupAt))
		}
		if !e.FinishedAt.IsZero() {
			r.FinishedCalls++
			finished = later(finished, e.FinishedAt)
		}
	}
	if r.Accepted > 0 && r.FinalCalls == r.Accepted {
		r.FinalAfter = final.Sub(r.LastHangup)
	}
	if r.Accepted > 0 && r.FinishedCalls == r.Accepted {
		r.FinishedAfter = finished.Sub(r.LastHangup)
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
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

// Soak limits (issue 16): resident set growth after the first minute, and goroutines.
const soakMaxRSSGrowth = 0.05

type soakSample struct {
	At      time.Duration // since the calls were all recording
	RSS     int64
	RSSAnon int64
	RSSFile int64
	// GCGoal is go_memstats_next_gc_bytes: about twice the live heap after the last GC.
	GCGoal     int64
	Goroutines int
	Threads    int
	CPU        time.Duration // the bot's CPU time so far (since its start)
}

type soakResult struct {
	Calls    int
	Duration time.Duration
	Interval time.Duration
	Samples  []soakSample
	// Base is the sample one interval in (the first minute), compared with the end.
	// AnonGrowth (the judged one) is of the anonymous resident set, RSSGrowth of all of it.
	AnonGrowth      float64
	RSSGrowth       float64
	GoroutineGrowth int
	Lost            uint64
	Files           fileCheck
	// FinalAfter runs from the last hang-up until every call's files were final (their
	// manifest entries complete), FinishedAfter until every manifest said finished (the
	// files' SHA-256 in it).
	FinalAfter    time.Duration
	FinishedAfter time.Duration
	// Heap lists what grew in the bot's live heap from the sample one interval in to the
	// end (go tool pprof -top -diff_base, in-use bytes), with -profile DIR.
	Heap      []profileLine
	HeapTotal string
	Load      loadSpan
	// Failed says which limit was broken (empty: passed).
	Failed []string
}

func runSoak(ctx context.Context, cb *callBench, n int, d, interval time.Duration, prof *profiler, logf logFunc) (res soakResult, err error) {
	res = soakResult{Calls: n, Duration: d, Interval: interval}
	t := cb.bot
	if err := t.start(ctx); err != nil {
		return res, err
	}
	defer func() {
		if serr := t.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the bot: %w", serr))
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
	sample := func() error {
		p, err := sampleProc(t.pid())
		if err != nil {
			return err
		}
		g, err := t.p.metric(ctx, "go_goroutines")
		if err != nil {
			return err
		}
		goal, err := t.p.metric(ctx, "go_memstats_next_gc_bytes")
		if err != nil {
			return err
		}
		s := soakSample{At: time.Since(start).Round(time.Second), RSS: p.rss, RSSAnon: p.rssAnon, RSSFile: p.rssFile, GCGoal: int64(goal),
			Goroutines: int(g), Threads: threads(t.pid()), CPU: p.cpu}
		res.Samples = append(res.Samples, s)
		logf("soak: %v: RSS %s (anonymous %s, files %s), GC goal %s, %d goroutines, %d threads (load %.1f)", s.At, mib(s.RSS), mib(s.RSSAnon), mib(s.RSSFile),
			mib(s.GCGoal), s.Goroutines, s.Threads, loadAvg())
		return nil
	}
	if err := sample(); err != nil {
		return res, err
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
	for k := 1; time.Duration(k)*interval <= d; k++ {
		select {
		case <-time.After(time.Until(start.Add(time.Duration(k) * interval))):
		case <-ctx.Done():
			return res, ctx.Err()
		}
		if err := sample(); err != nil {
			return res, err
		}
		if k == 1 {
			heap("soak-base")
		}
	}
	heap("soak-end")
	if len(heaps) == 2 {
		res.Heap, res.HeapTotal, err = topFunctions(ctx, heaps[1:], false, 15, "-sample_index=inuse_space", "-diff_base="+heaps[0])
		if err != nil {
			logf("soak: heap growth: %v", err)
		}
	}
	res.Load.After = loadAvg()
	last := cb.env.hangUp(ctx, calls)
	hungUp = true
	final, err := t.waitFinal(ctx, calls)
	if err != nil {
		return res, err
	}
	res.FinalAfter = final.Sub(last)
	res.FinishedAfter = t.finishedAt.Sub(last)
	results := make([]callResult, len(calls))
	for i, c := range calls {
		if results[i], err = t.result(c); err != nil {
			return res, err
		}
		res.Lost += results[i].Lost
	}
	logf("soak: checking %d files with ffprobe", 2*n)
	res.Files = checkCalls(ctx, calls, results)
	res.judge()
	return res, nil
}

// judge compares the end with the sample one interval in. Goroutines are judged on the
// least of the last three samples, so that one HTTP connection or sync request in flight
// at a sample is not taken for a leak; a leak raises all three.
func (r *soakResult) judge() {
	if len(r.Samples) < 3 {
		r.Failed = append(r.Failed, fmt.Sprintf("only %d samples: run longer than two intervals", len(r.Samples)))
		return
	}
	base, end := r.Samples[1], r.Samples[len(r.Samples)-1]
	r.RSSGrowth = float64(end.RSS-base.RSS) / float64(base.RSS)
	r.AnonGrowth = float64(end.RSSAnon-base.RSSAnon) / float64(max(base.RSSAnon, 1))
	least := end.Goroutines
	for _, s := range r.Samples[max(1, len(r.Samples)-3):] {
		least = min(least, s.Goroutines)
	}
	r.GoroutineGrowth = least - base.Goroutines
	if r.AnonGrowth > soakMaxRSSGrowth {
		r.Failed = append(r.Failed, fmt.Sprintf("the anonymous resident set grew %.1f%% after the first interval (limit %.0f%%)", 100*r.AnonGrowth, 100*soakMaxRSSGrowth))
	}
	if r.GoroutineGrowth > 0 {
		r.Failed = append(r.Failed, fmt.Sprintf("goroutines grew by %d after the first interval", r.GoroutineGrowth))
	}
	if r.Files.Whole != r.Calls {
		r.Failed = append(r.Failed, fmt.Sprintf("%d of %d calls recorded whole", r.Files.Whole, r.Calls))
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// stepRow is one recorder answering n calls for one measured window.
type stepRow struct {
	Target    string
	Calls     int
	Seconds   float64
	CPU       time.Duration // the recorder, during the window
	SenderCPU time.Duration // this process (the callers), during the window
	RSS       int64         // at the end of the window
	RSSIdle   int64         // the fresh process after start-up, before the first call
	Packets   uint64        // sent by the callers during the window
	Sent      uint64        // sent in the whole calls
	Lost      uint64
	Dropped   uint64
	// KernelDrops are UDP datagrams the kernel dropped in the namespace during the whole
	// calls because a receive buffer was full (mostly the recorder's sockets).
	KernelDrops uint64
	// FinalAfter is the time from the last hang-up until every call's files were final.
	FinalAfter time.Duration
	Files      fileCheck
	Load       loadSpan
	Profile    []string
	Heap       string // live heap at the end of the window (with -profile)
}

// cpuPerParticipant is CPU time per participant-second (one call has one participant).
func (r stepRow) cpuPerParticipant() time.Duration {
	if r.Calls == 0 || r.Seconds == 0 {
		return 0
	}
	return time.Duration(float64(r.CPU) / float64(r.Calls) / r.Seconds)
}

// memPerCall is the resident set's growth from the idle process, per call.
func (r stepRow) memPerCall() float64 { return float64(r.RSS-r.RSSIdle) / float64(r.Calls) }

func (r stepRow) usPerPacket() float64 {
	if r.Packets == 0 {
		return 0
	}
	return float64(r.CPU.Microseconds()) / float64(r.Packets)
}

func (r stepRow) lossless() bool {
	return r.Lost == 0 && r.Files.Whole == r.Calls
}

// runStep starts a fresh t, has alice place n calls to it, measures t for window once
// every track records, hangs up and checks every file.
func runStep(ctx context.Context, env *callEnv, t target, n int, window time.Duration, prof *profiler, profName string) (row stepRow, err error) {
	row = stepRow{Target: t.name(), Calls: n, Seconds: window.Seconds()}
	if err := t.start(ctx); err != nil {
		return row, err
	}
	defer func() {
		if serr := t.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the %s: %w", t.name(), serr))
		}
		t.clean()
	}()
	if err := env.dms(ctx, t.user(), t.rooms(), n); err != nil {
		return row, err
	}
	// The idle process: started, synced, its rooms joined, no call yet.
	time.Sleep(2 * time.Second)
	idle, err := sampleProc(t.pid())
	if err != nil {
		return row, err
	}
	row.RSSIdle = idle.rss

	drops0 := udpRcvbufErrors()
	env.log("%s: placing %d calls", t.name(), n)
	calls, err := env.placeCalls(ctx, (*t.rooms())[:n])
	if err != nil {
		return row, err
	}
	hungUp := false
	defer func() {
		if !hungUp {
			closeCalls(calls)
		}
	}()
	if err := t.waitRecording(ctx, calls); err != nil {
		return row, fmt.Errorf("%s: %w", t.name(), err)
	}
	time.Sleep(3 * time.Second) // every track past its first keyframe and flush

	var profErr error
	profDone := make(chan struct{})
	if addr := t.pprofAddr(); addr != "" && prof != nil {
		go func() {
			defer close(profDone)
			row.Profile, profErr = prof.capture(ctx, addr, profName, window)
		}()
	} else {
		close(profDone)
	}
	row.Load.Before = loadAvg()
	p0, s0, r0 := packetsSent(calls), mustSample(0), mustSample(t.pid())
	env.log("%s: measuring %d calls for %v (load %.1f)", t.name(), n, window, row.Load.Before)
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return row, ctx.Err()
	}
	p1, s1, r1 := packetsSent(calls), mustSample(0), mustSample(t.pid())
	row.Load.After = loadAvg()
	row.Packets = p1 - p0
	row.CPU, row.SenderCPU, row.RSS = r1.cpu-r0.cpu, s1.cpu-s0.cpu, r1.rss
	if addr := t.pprofAddr(); addr != "" && prof != nil {
		<-profDone // the CPU profile ends with the window; then what memory holds
		if row.Heap, err = prof.heap(ctx, addr, profName); err != nil {
			env.log("%s: heap profile: %v", t.name(), err)
		}
	}

	last := env.hangUp(ctx, calls)
	hungUp = true
	row.Sent = packetsSent(calls)
	row.KernelDrops = udpRcvbufErrors() - drops0
	final, err := t.waitFinal(ctx, calls)
	if err != nil {
		return row, fmt.Errorf("%s: %w", t.name(), err)
	}
	row.FinalAfter = final.Sub(last)
	<-profDone
	if profErr != nil {
		env.log("%s: profile: %v", t.name(), profErr)
	}

	results := make([]callResult, len(calls))
	for i, c := range calls {
		if results[i], err = t.result(c); err != nil {
			return row, err
		}
		row.Lost += results[i].Lost
		row.Dropped += results[i].Dropped
	}
	env.log("%s: checking %d files with ffprobe", t.name(), 2*n)
	row.Files = checkCalls(ctx, calls, results)
	if len(row.Files.Problems) > 0 {
		env.log("%s: not whole: %s", t.name(), strings.Join(row.Files.Problems, "; "))
	}
	env.log("%s, %d calls: %.2f ms CPU per participant-second, %s per call, final %.2f s after the last hang-up, %d of %d packets lost, %d dropped by the kernel, %d/%d whole",
		t.name(), n, ms(row.cpuPerParticipant()), kib(row.memPerCall()), row.FinalAfter.Seconds(), row.Lost, row.Sent, row.KernelDrops, row.Files.Whole, n)
	return row, nil
}

func mustSample(pid int) procSample {
	s, _ := sampleProc(pid)
	return s
}

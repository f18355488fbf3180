package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
)

// Whole-call check: every call has its audio and its video file, ffprobe reads each, and
// each holds the call minus at most wholeSlack (the connection's first moments and, for
// video, the wait for the first keyframe, sent every second).
const wholeSlack = 2 * time.Second

// The callers' media: 20 ms Opus packets, 30 fps VP8.
const (
	audioPacket = 20 * time.Millisecond
	videoFrame  = time.Second / 30
)

// fileCheck sums up the whole-call check of a step.
type fileCheck struct {
	Calls, Whole int
	Files        int
	// Shortfall is the largest gap between a call's length and a file of it.
	Shortfall time.Duration
	// Problems holds the first few reasons a call was not whole.
	Problems []string
}

// checkCalls probes every file of every call (two ffprobe at a time).
func checkCalls(ctx context.Context, calls []*placedCall, results []callResult) fileCheck {
	fc := fileCheck{Calls: len(calls)}
	var mu sync.Mutex
	parallel(len(calls), 2, func(i int) {
		c, r := calls[i], results[i]
		whole := true
		var why string
		kinds := map[string]int{}
		var short time.Duration
		for _, f := range r.Files {
			kinds[f.Kind]++
			d, err := mediaDuration(ctx, f.Path, f.Kind)
			if err != nil {
				whole, why = false, err.Error()
				continue
			}
			s := c.length() - d
			short = max(short, s)
			if s > wholeSlack {
				whole, why = false, fmt.Sprintf("%s holds %.1f s of a %.1f s call", f.Path, d.Seconds(), c.length().Seconds())
			}
		}
		if kinds["audio"] != 1 || kinds["video"] != 1 {
			whole, why = false, fmt.Sprintf("call %s: %d audio and %d video files", c.id, kinds["audio"], kinds["video"])
		}
		mu.Lock()
		defer mu.Unlock()
		fc.Files += len(r.Files)
		fc.Shortfall = max(fc.Shortfall, short)
		if whole {
			fc.Whole++
		} else if len(fc.Problems) < 3 {
			fc.Problems = append(fc.Problems, why)
		}
	})
	return fc
}

// mediaDuration is how much media a file holds: its packets counted by ffprobe, times
// the callers' packet duration (Opus) or frame interval (VP8).
func mediaDuration(ctx context.Context, path, kind string) (time.Duration, error) {
	sel := "a:0"
	per := audioPacket
	if kind == "video" {
		sel, per = "v:0", videoFrame
	}
	out, err := exec.CommandContext(ctx, mediacheck.FFprobe, "-v", "error", "-select_streams", sel, "-count_packets",
		"-show_entries", "stream=nb_read_packets", "-of", "json", path).Output()
	if err != nil {
		return 0, fmt.Errorf("ffprobe %s: %w", path, err)
	}
	var r struct {
		Streams []struct {
			Packets string `json:"nb_read_packets"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &r); err != nil || len(r.Streams) != 1 {
		return 0, fmt.Errorf("ffprobe %s: no %s stream", path, kind)
	}
	n, err := strconv.Atoi(r.Streams[0].Packets)
	if err != nil {
		return 0, fmt.Errorf("ffprobe %s: %q packets", path, r.Streams[0].Packets)
	}
	return time.Duration(n) * per, nil
}

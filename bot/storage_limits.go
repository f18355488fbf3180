package bot

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
)

// limitsInterval is how often limits are checked: often enough that a short limit is met
// within a few percent.
func (st *storeRT) limitsInterval() time.Duration {
	every := 5 * time.Second
	if d := st.maxDuration("group"); d > 0 && d/20 < every {
		every = max(d/20, 500*time.Millisecond)
	}
	return every
}

// maxDuration is the recording length limit for a kind of call: recordings.max_duration,
// and for 1:1 calls also calls.max_duration (the call ends then anyway), whichever is
// shorter.
func (st *storeRT) maxDuration(kind string) time.Duration {
	d := st.cfg.Recordings.MaxDuration.D()
	if kind == "1:1" {
		if c := st.cfg.Calls.MaxDuration.D(); c > 0 && (d == 0 || c < d) {
			d = c
		}
	}
	return d
}

// warnLead is how long before a duration limit the room is warned: a minute, or half the
// limit when it is shorter than two minutes.
func warnLead(limit time.Duration) time.Duration {
	if limit < 2*time.Minute {
		return limit / 2
	}
	return time.Minute
}

// limitAction is what checkLimits decided for one recording.
type limitAction struct {
	lr     *liveRec
	warn   string
	stop   string
	reason string // metrics label
}

// checkLimits warns about and stops recordings that reach recordings.max_duration or
// recordings.max_size, and stops every recording when the disk runs out of space.
func (st *storeRT) checkLimits(ctx context.Context) {
	now := st.now()
	diskLow := ""
	if min := int64(st.cfg.Recordings.MinFreeSpace); min > 0 {
		if free, err := st.statfs(st.cfg.Recordings.Dir); err == nil && free < min {
			diskLow = fmt.Sprintf("the recorder's disk is almost full (%s free, recordings.min_free_space is %s); I stopped before any file could be damaged", config.Size(free), config.Size(min))
		}
	}
	maxSize := int64(st.cfg.Recordings.MaxSize)
	st.mu.Lock()
	var acts []limitAction
	for _, lr := range st.live {
		if lr.stopping {
			continue
		}
		a := limitAction{lr: lr}
		elapsed := now.Sub(lr.sess.StartedAt())
		if limit := st.maxDuration(lr.kind); limit > 0 {
			switch {
			case elapsed >= limit:
				a.stop = fmt.Sprintf("the maximum recording length of %s was reached", formatDuration(limit))
				a.reason = "max_duration"
			case elapsed >= limit-warnLead(limit) && !lr.warnedDuration:
				lr.warnedDuration = true
				a.warn = fmt.Sprintf("⏱ This recording reaches its maximum length (%s) in %s and stops then.", formatDuration(limit), formatDuration(limit-elapsed))
			}
		}
		if a.stop == "" && maxSize > 0 {
			size := folderBytes(lr.sess.Folder())
			switch {
			case size >= maxSize:
				a.stop = fmt.Sprintf("the maximum recording size of %s was reached", config.Size(maxSize))
				a.reason = "max_size"
			case size >= maxSize*9/10 && !lr.warnedSize:
				lr.warnedSize = true
				a.warn = fmt.Sprintf("💾 This recording has reached %s of its %s limit and stops when it is full.", formatBytes(size), config.Size(maxSize))
			}
		}
		if diskLow != "" {
			a.stop, a.reason = diskLow, "disk_space"
		}
		if a.stop != "" {
			lr.stopping = true
			lr.stopWhy = a.stop
		}
		if a.stop != "" || a.warn != "" {
			acts = append(acts, a)
		}
	}
	st.mu.Unlock()
	for _, a := range acts {
		if a.warn != "" && (a.lr.kind != "1:1" || st.cfg.Bot.Notices) {
			st.say(ctx, a.lr.roomID, a.warn)
		}
		if a.stop != "" {
			st.log.Warn().Str("folder", filepath.Base(a.lr.sess.Folder())).Str("why", a.stop).Msg("Stopping a recording at a limit")
			st.m.RecordingsStopped.WithLabelValues(a.reason).Inc()
			st.stop(ctx, a.lr.roomID, a.lr.kind, a.stop)
		}
	}
}

// stopRecording ends the recording of a room: a 1:1 call is hung up, a group recording is
// stopped. why ends up in the summary.
func (b *Bot) stopRecording(ctx context.Context, roomID id.RoomID, kind, why string) {
	if kind == "1:1" {
		b.calls.HangupRoom(roomID, why)
		return
	}
	b.groups.stopFor(ctx, roomID, why)
}

// stopFor stops a room's group recording without a command (a limit, the disk).
func (g *groups) stopFor(ctx context.Context, roomID id.RoomID, why string) bool {
	g.mu.Lock()
	gr := g.active[roomID]
	if gr == nil {
		g.mu.Unlock()
		return false
	}
	delete(g.active, roomID)
	close(gr.stopped)
	g.mu.Unlock()
	m, err := gr.rec.Stop(ctx, why)
	g.report(ctx, roomID, gr.folder, m, why, err)
	return true
}

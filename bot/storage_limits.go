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
// recordings.max_size; when the disk runs low it stops the recordings of rooms that use
// more than their share of it, and when it runs out (min_free_space) every recording.
func (st *storeRT) checkLimits(ctx context.Context) {
	now := st.now()
	diskLow := ""
	overShare := map[id.RoomID]string{}
	if free, err := st.statfs(st.cfg.Recordings.Dir); err == nil {
		if min := int64(st.cfg.Recordings.MinFreeSpace); min > 0 && free < min {
			diskLow = fmt.Sprintf("the recorder's disk is almost full (%s free, recordings.min_free_space is %s); I stopped before any file could be damaged", config.Size(free), config.Size(min))
		} else if low := int64(st.cfg.Recordings.EffectiveLowFreeSpace()); low > 0 && free < low {
			overShare = st.roomsOverShare(ctx, free)
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
		if why := overShare[lr.roomID]; why != "" && a.stop == "" {
			a.stop, a.reason = why, "disk_share"
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

// roomsOverShare is the disk guard's fair share: when free space is low, the rooms with a
// recording running whose recordings (live, and finished ones still on this disk) use more
// than the average of those rooms are stopped first, with why; the others go on until the
// hard floor (min_free_space). One room filling the disk cannot end every other recording.
func (st *storeRT) roomsOverShare(ctx context.Context, free int64) map[id.RoomID]string {
	usage := map[id.RoomID]int64{} // the rooms still recording
	folders := map[string]id.RoomID{}
	st.mu.Lock()
	for _, lr := range st.live {
		if !lr.stopping {
			usage[lr.roomID] += 0
		}
		folders[lr.sess.Folder()] = lr.roomID
	}
	st.mu.Unlock()
	if len(usage) < 2 {
		return nil // one room has the whole disk to itself: min_free_space decides
	}
	for folder, room := range folders {
		if _, ok := usage[room]; ok {
			usage[room] += folderBytes(folder)
		}
	}
	rooms := make([]string, 0, len(usage))
	for r := range usage {
		rooms = append(rooms, string(r))
	}
	if kept, err := st.db.KeptBytesByRoom(ctx, rooms); err == nil {
		for r, n := range kept {
			usage[id.RoomID(r)] += n
		}
	} else {
		st.log.Warn().Err(err).Msg("Could not read the rooms' kept recordings; sharing the disk by live recordings only")
	}
	var total int64
	for _, n := range usage {
		total += n
	}
	share := total / int64(len(usage))
	out := map[id.RoomID]string{}
	for r, n := range usage {
		if n > share {
			out[r] = fmt.Sprintf("the recorder's disk is running low (%s free) and this room's recordings take more of it (%s) than its share (%s); recordings in other rooms go on",
				config.Size(free), config.Size(n), config.Size(share))
		}
	}
	return out
}

// inviterOf is who invited the bot into a room ("" when unknown).
func (st *storeRT) inviterOf(ctx context.Context, roomID id.RoomID) id.UserID {
	who, err := st.db.Inviter(ctx, string(roomID))
	if err != nil {
		st.log.Warn().Err(err).Stringer("room_id", roomID).Msg("Could not read who invited me; only the per-room limit applies")
	}
	return id.UserID(who)
}

// limitError is a refused recording, in words for the room.
type limitError struct{ msg string }

func (e limitError) Error() string { return e.msg }

// admit checks the limits on recordings at once before a recording starts: per room
// (recordings.max_per_room), per inviter (recordings.max_per_inviter) and, for group
// recordings, in all (calls.max_group_recordings). onSessionStart checks again under
// the same lock as it takes the slot.
func (st *storeRT) admit(ctx context.Context, roomID id.RoomID, kind string) error {
	inviter := st.inviterOf(ctx, roomID)
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.admitLocked(roomID, inviter, kind)
}

func (st *storeRT) admitLocked(roomID id.RoomID, inviter id.UserID, kind string) error {
	r := st.cfg.Recordings
	inRoom, byInviter, groups := 0, 0, 0
	for _, lr := range st.live {
		if lr.roomID == roomID {
			inRoom++
		}
		if inviter != "" && lr.inviter == inviter {
			byInviter++
		}
		if lr.kind != "1:1" {
			groups++
		}
	}
	switch {
	case r.MaxPerRoom > 0 && inRoom >= r.MaxPerRoom:
		return limitError{fmt.Sprintf("this room already has %d recording(s) running, the most one room may have (recordings.max_per_room)", inRoom)}
	case r.MaxPerInviter > 0 && inviter != "" && byInviter >= r.MaxPerInviter:
		return limitError{fmt.Sprintf("the rooms %s invited me into already have %d recording(s) running, the most one person's rooms may have (recordings.max_per_inviter)", inviter, byInviter)}
	case kind != "1:1" && groups >= st.cfg.Calls.MaxGroupRecordings:
		return limitError{fmt.Sprintf("I am already recording %d group calls, the most I record at once (calls.max_group_recordings)", groups)}
	}
	return nil
}

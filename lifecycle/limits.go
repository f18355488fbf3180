package lifecycle

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// limitsInterval is how often limits are checked: often enough that a short limit is met
// within a few percent.
func (lc *Lifecycle) limitsInterval() time.Duration {
	every := 5 * time.Second
	if d := lc.maxDuration(recorder.KindMesh); d > 0 && d/20 < every {
		every = max(d/20, 500*time.Millisecond)
	}
	return every
}

// maxDuration is the recording length limit for a kind of call: recordings.max_duration,
// and for 1:1 calls also calls.max_duration (the call ends then anyway), whichever is
// shorter.
func (lc *Lifecycle) maxDuration(kind recorder.Kind) time.Duration {
	d := lc.cfg.Recordings.MaxDuration.D()
	if kind.OneToOne() {
		if c := lc.cfg.Calls.MaxDuration.D(); c > 0 && (d == 0 || c < d) {
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
	reason StopReason
}

// checkLimits warns about and stops recordings that reach recordings.max_duration or
// recordings.max_size; when the disk runs low it stops the recordings of rooms that use
// more than their share of it, and when it runs out (min_free_space) every recording.
func (lc *Lifecycle) checkLimits(ctx context.Context) {
	now := lc.now()
	diskLow := ""
	overShare := map[id.RoomID]string{}
	if free, err := lc.statfs(lc.cfg.Recordings.Dir); err == nil {
		if min := int64(lc.cfg.Recordings.MinFreeSpace); min > 0 && free < min {
			diskLow = fmt.Sprintf("the recorder's disk is almost full (%s free, recordings.min_free_space is %s); I stopped before any file could be damaged", config.Size(free), config.Size(min))
		} else if low := int64(lc.cfg.Recordings.EffectiveLowFreeSpace()); low > 0 && free < low {
			overShare = lc.roomsOverShare(ctx, free)
		}
	}
	maxSize := int64(lc.cfg.Recordings.MaxSize)
	lc.mu.Lock()
	var acts []limitAction
	for _, lr := range lc.live {
		if lr.stopping {
			continue
		}
		a := limitAction{lr: lr}
		elapsed := now.Sub(lr.sess.StartedAt())
		if limit := lc.maxDuration(lr.kind); limit > 0 {
			switch {
			case elapsed >= limit:
				a.stop = fmt.Sprintf("the maximum recording length of %s was reached", FormatDuration(limit))
				a.reason = StopMaxDuration
			case elapsed >= limit-warnLead(limit) && !lr.warnedDuration:
				lr.warnedDuration = true
				a.warn = fmt.Sprintf("⏱ This recording reaches its maximum length (%s) in %s and stops then.", FormatDuration(limit), FormatDuration(limit-elapsed))
			}
		}
		if a.stop == "" && maxSize > 0 {
			size := folderBytes(lr.sess.Folder())
			switch {
			case size >= maxSize:
				a.stop = fmt.Sprintf("the maximum recording size of %s was reached", config.Size(maxSize))
				a.reason = StopMaxSize
			case size >= maxSize*9/10 && !lr.warnedSize:
				lr.warnedSize = true
				a.warn = fmt.Sprintf("💾 This recording has used %d%% of its %s limit (%s) and stops when it is full.", size*100/maxSize, config.Size(maxSize), FormatBytes(size))
			}
		}
		if why := overShare[lr.roomID]; why != "" && a.stop == "" {
			a.stop, a.reason = why, StopDiskShare
		}
		if diskLow != "" {
			a.stop, a.reason = diskLow, StopDiskSpace
		}
		if a.stop != "" {
			lr.stopping, lr.stopReason = true, a.reason
		}
		if a.stop != "" || a.warn != "" {
			acts = append(acts, a)
		}
	}
	lc.mu.Unlock()
	for _, a := range acts {
		if a.warn != "" && (!a.lr.kind.OneToOne() || lc.cfg.Bot.Notices) {
			lc.chat.Notice(ctx, a.lr.roomID, a.warn, "")
		}
		if a.stop != "" {
			lc.log.Warn().Str("folder", filepath.Base(a.lr.sess.Folder())).Str("why", a.stop).Msg("Stopping a recording at a limit")
			lc.calls.Stop(ctx, a.lr.roomID, a.stop)
		}
	}
}

// roomsOverShare is the disk guard's fair share: when free space is low, the rooms with a
// recording running whose recordings (live, and finished ones still on this disk) use more
// than the average of those rooms are stopped first, with why; the others go on until the
// hard floor (min_free_space). One room filling the disk cannot end every other recording.
func (lc *Lifecycle) roomsOverShare(ctx context.Context, free int64) map[id.RoomID]string {
	usage := map[id.RoomID]int64{} // the rooms still recording
	folders := map[string]id.RoomID{}
	lc.mu.Lock()
	for _, lr := range lc.live {
		if !lr.stopping {
			usage[lr.roomID] += 0
		}
		folders[lr.sess.Folder()] = lr.roomID
	}
	lc.mu.Unlock()
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
	if kept, err := lc.db.KeptBytesByRoom(ctx, rooms); err == nil {
		for r, n := range kept {
			usage[id.RoomID(r)] += n
		}
	} else {
		lc.log.Warn().Err(err).Msg("Could not read the rooms' kept recordings; sharing the disk by live recordings only")
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

// maxCachedInviters bounds the inviters kept in memory.
const maxCachedInviters = 10000

// inviterOf is who invited the bot into a room ("" when unknown), read once per room.
func (lc *Lifecycle) inviterOf(ctx context.Context, roomID id.RoomID) id.UserID {
	lc.mu.Lock()
	who, ok := lc.inviters[roomID]
	lc.mu.Unlock()
	if ok {
		return who
	}
	w, err := lc.db.Inviter(ctx, string(roomID))
	if err != nil {
		lc.log.Warn().Err(err).Stringer("room_id", roomID).Msg("Could not read who invited me; only the per-room limit applies")
		return ""
	}
	lc.mu.Lock()
	lc.cacheInviterLocked(roomID, id.UserID(w))
	lc.mu.Unlock()
	return id.UserID(w)
}

func (lc *Lifecycle) cacheInviterLocked(roomID id.RoomID, who id.UserID) {
	if len(lc.inviters) >= maxCachedInviters {
		clear(lc.inviters)
	}
	lc.inviters[roomID] = who
}

// Admit checks the limits on recordings at once before a recording starts: per room
// (recordings.max_per_room), per inviter (recordings.max_per_inviter) and, for group
// recordings (every kind but a 1:1 call), in all (calls.max_group_recordings). A refusal is a LimitError. The
// recorder's start checks again under the same lock as it takes the slot.
func (lc *Lifecycle) Admit(ctx context.Context, roomID id.RoomID, kind recorder.Kind) error {
	inviter := lc.inviterOf(ctx, roomID)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.admitLocked(roomID, inviter, kind)
}

func (lc *Lifecycle) admitLocked(roomID id.RoomID, inviter id.UserID, kind recorder.Kind) error {
	r := lc.cfg.Recordings
	inRoom, byInviter, groups := 0, 0, 0
	for _, lr := range lc.live {
		if lr.roomID == roomID {
			inRoom++
		}
		if inviter != "" && lr.inviter == inviter {
			byInviter++
		}
		if !lr.kind.OneToOne() {
			groups++
		}
	}
	switch {
	case r.MaxPerRoom > 0 && inRoom >= r.MaxPerRoom:
		return LimitError{fmt.Sprintf("this room already has %s running, the most one room may have (recordings.max_per_room)", Plural(inRoom, "recording"))}
	case r.MaxPerInviter > 0 && inviter != "" && byInviter >= r.MaxPerInviter:
		return LimitError{fmt.Sprintf("the rooms %s invited me into already have %s running, the most one person's rooms may have (recordings.max_per_inviter)", inviter, Plural(byInviter, "recording"))}
	case !kind.OneToOne() && groups >= lc.cfg.Calls.MaxGroupRecordings:
		return LimitError{fmt.Sprintf("I am already recording %d group calls, the most I record at once (calls.max_group_recordings)", groups)}
	}
	return nil
}

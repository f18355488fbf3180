package lifecycle

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// When the recordings disk fails (full, an I/O error), the recorder goes on without
// writing and tries again by itself (recorder/writefail.go). The room hears of it once per
// outage of a recording, not per track (the tracks of a call fail together), and once
// more when every track writes again.

// onWriteError tells the room, the first time a track of the recording cannot write,
// that the recording has a gap from now on and why.
func (lc *Lifecycle) onWriteError(s *recorder.Session, e recorder.FileEntry, err error) {
	lr, _ := lc.liveRec(s)
	if lr == nil {
		return
	}
	lc.m.WriteFailures.Inc()
	lc.mu.Lock()
	lr.failing++
	tell := !lr.toldFailing
	lr.toldFailing = true
	lc.mu.Unlock()
	lc.log.Error().Err(err).Str("folder", lr.folder).Str("file", e.File).Msg("A track of the recording cannot write; it goes on by itself when the disk takes writes again")
	if !tell {
		return
	}
	at := FormatDuration(lc.now().Sub(s.StartedAt()))
	lc.tellRoom(lr, fmt.Sprintf("⚠️ I cannot write this recording to disk right now (%s), so it has a gap from %s on. It goes on by itself as soon as the disk takes writes again.", writeTrouble(err), at))
}

// onWriteResumed tells the room, once every failed track writes again, that the
// recording goes on.
func (lc *Lifecycle) onWriteResumed(s *recorder.Session, e recorder.FileEntry, lost time.Duration) {
	lr, _ := lc.liveRec(s)
	if lr == nil {
		return
	}
	lc.mu.Lock()
	if lr.failing > 0 {
		lr.failing--
	}
	tell := lr.failing == 0 && lr.toldFailing
	if tell {
		lr.toldFailing = false // a later outage is told again
	}
	lc.mu.Unlock()
	if tell {
		lc.tellRoom(lr, fmt.Sprintf("✅ Writing works again: the recording goes on (about %s is missing).", FormatDuration(lost)))
	}
}

// tellRoom posts a notice about a live recording from a goroutine of its own (hooks run on
// media goroutines); a 1:1 call's room only with bot.notices.
func (lc *Lifecycle) tellRoom(lr *liveRec, text string) {
	if lr.kind.OneToOne() && !lc.cfg.Bot.Notices {
		return
	}
	lc.wg.Add(1)
	lc.telling.Add(1)
	go func(room id.RoomID) {
		defer lc.wg.Done()
		defer lc.telling.Done()
		ctx, cancel := lc.dbCtx()
		defer cancel()
		lc.chat.Notice(ctx, room, text, "")
	}(lr.roomID)
}

// writeTrouble says in words what a write error means, without paths or Go's wording
// (the log has the error itself).
func writeTrouble(err error) string {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return "the recorder's disk is full"
	case errors.Is(err, syscall.EDQUOT):
		return "the recorder's disk quota is used up"
	case errors.Is(err, syscall.EROFS):
		return "the recorder's disk became read-only"
	case errors.Is(err, syscall.EIO):
		return "the recorder's disk reports errors"
	default:
		return "the recorder's disk takes no writes"
	}
}

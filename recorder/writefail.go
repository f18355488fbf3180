package recorder

import (
	"fmt"
	"time"
)

// Write errors. A file that cannot be written any more (a full disk, an I/O error; the
// writers wrap such errors in media.ErrWrite) ends its part: the entry is interrupted with
// the error as its end_reason, the manifest gets a warning, the error is logged and the
// hooks hear of it (Hooks.OnWriteError). The track itself goes on: it reads and counts its
// packets and drops its frames, and tries again after retryFirst, then after twice as long
// each time up to retryMax (from the track's own loop, so it ends with the track). A try
// first writes a probe file (probeSpace); once the folder takes it, the broken file is
// repaired (a torn page cut, the stream ended, so that what was written before plays),
// and the next frame (video: the next key frame, which is asked for) starts a new part,
// which Hooks.OnWriteResumed and a second warning report. A file that could not be
// created goes the same way.
const (
	retryFirst = time.Second
	retryMax   = 30 * time.Second
)

// writeFailure is a track's state after a write error.
type writeFailure struct {
	// err is the error while the track cannot write, nil when it can.
	err error
	// file is the part the error ended (empty if it was never created).
	file string
	// since is when writing failed, next when to try again, delay the wait after the next
	// failed try.
	since, next time.Time
	delay       time.Duration
	// dropped counts the frames lost since.
	dropped uint64
	// resumed: the outage is over; the next part opened reports it (writeResumed).
	resumed bool
	// unfinished lists files to repair when the folder takes writes again: the file the
	// error ended, and files whose end could not be written.
	unfinished []string
}

// writeFailed handles a write error of the current part: the part ends and the track
// waits before it tries again (see the top of this file).
func (p *pipeline) writeFailed(err error, now time.Time) {
	file := ""
	if c := p.cur; c != nil {
		file = c.file
	}
	p.writeFailedIn(file, err, now)
}

// writeFailedIn handles a write error of file: the current part, or a new part's file
// that could not be created.
func (p *pipeline) writeFailedIn(file string, err error, now time.Time) {
	wf := &p.wf
	first := wf.err == nil
	if first {
		wf.err, wf.since, wf.delay, wf.dropped, wf.resumed = err, now, retryFirst, 0, false
		p.t.log.Error().Err(err).Str("file", file).Msg("Writing the track failed; it goes on in a new part when the folder takes writes again")
	} else {
		p.t.log.Debug().Err(err).Str("file", file).Msg("Writing the track failed again")
	}
	wf.file = file
	wf.next = now.Add(wf.delay)
	if c := p.cur; c != nil && c.file == file {
		p.closePart("write failed: " + err.Error())
		wf.unfinished = append(wf.unfinished, c.file)
	}
	if !first {
		return
	}
	s := p.t.s
	entry := FileEntry{File: file}
	if file != "" {
		entry = s.fileEntry(file)
	}
	s.AddWarning(fmt.Sprintf("%s: writing the %s track failed at %s on the call's timeline (%v); its media is lost until the folder takes writes again, then it goes on in a new part",
		p.t.info.who(), p.t.info.source(), fmtOffset(now.Sub(s.t0)), err))
	s.rec.opts.Hooks.writeError(s, entry, err)
}

// writable reports whether the track can write at now: there is no write error, or the
// wait after one is over and the folder takes writes again.
func (p *pipeline) writable(now time.Time) bool {
	if p.wf.err == nil {
		return true
	}
	if p.retryWrite(now) {
		return true
	}
	p.wf.dropped++
	return false
}

// retryWrite tries, when the wait is over, whether the folder takes writes again; if so
// it repairs what the error broke and ends the outage.
func (p *pipeline) retryWrite(now time.Time) bool {
	wf := &p.wf
	if wf.err == nil {
		return true
	}
	if now.Before(wf.next) {
		return false
	}
	if err := p.t.s.rec.probe(p.t.s.folder); err != nil {
		wf.delay = min(2*wf.delay, retryMax)
		wf.next = now.Add(wf.delay)
		p.t.log.Debug().Err(err).Dur("retry_in", wf.delay).Msg("The call folder takes no writes yet")
		return false
	}
	p.repairBroken()
	wf.err, wf.resumed = nil, true
	if p.t.codec.IsVideo() {
		p.needKey = true
		p.requestKeyframe(now)
	}
	return true
}

// writeResumed reports the end of an outage once the next part is open.
func (p *pipeline) writeResumed() {
	wf := &p.wf
	if !wf.resumed {
		return
	}
	wf.resumed = false
	c, s := p.cur, p.t.s
	lost := c.startedAt.Sub(wf.since)
	p.t.log.Info().Str("file", c.file).Dur("lost", lost).Uint64("frames_lost", wf.dropped).Msg("Writing works again; the track goes on in a new part")
	s.AddWarning(fmt.Sprintf("%s: the %s track goes on in %s from %s on the call's timeline, %v after writing failed",
		p.t.info.who(), p.t.info.source(), c.file, fmtOffset(c.startedAt.Sub(s.t0)), lost.Round(time.Millisecond)))
	s.rec.opts.Hooks.writeResumed(s, s.fileEntry(c.file), lost)
}

// repairBroken makes the files a write error left unfinished playable (repairFile: a torn
// last page or block cut, the stream ended, Cues and Duration written) and updates their
// entries. A file that cannot be repaired yet stays on the list (finish tries once more).
func (p *pipeline) repairBroken() {
	wf := &p.wf
	keep := wf.unfinished[:0]
	for _, file := range wf.unfinished {
		s := p.t.s
		dur, err := repairFile(s.path(file))
		if err != nil {
			p.t.log.Warn().Err(err).Str("file", file).Msg("Could not repair the file a write error left")
			keep = append(keep, file)
			continue
		}
		size, sum, derr := fileDigest(s.path(file))
		s.updateEntry(file, true, func(e *FileEntry) {
			e.DurationMs = dur.Milliseconds()
			if derr == nil {
				e.Bytes, e.SHA256 = size, sum
			}
			e.EndReason += "; repaired when the folder took writes again"
		})
		p.t.log.Info().Str("file", file).Dur("duration", dur).Msg("Repaired the file a write error left")
	}
	wf.unfinished = keep
}

// fmtOffset formats a place on the call's timeline as h:mm:ss.
func fmtOffset(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	return fmt.Sprintf("%d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

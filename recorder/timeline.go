package recorder

import (
	"fmt"
	"time"
)

// Timeline checks of the track pipeline. A part's timeline is its anchor (the local time
// of PTS 0) plus the RTP time since the part's first frame. A frame is on it when it does
// not go back in time and arrives neither much earlier nor much later than its timestamp
// says. A frame off it is not trusted at once: a single stray packet (a hostile or broken
// sender, a packet of another stream) must not split the file or drop what follows. It is
// held, and only when jumpConfirm frames in a row agree on a new timeline does the track
// follow them: the current part ends and the held frames start the next one. A frame back
// on the current timeline drops the held ones (counted as dropped frames).
const (
	// maxEarly is how much earlier than its timestamp says a frame may arrive. Arrival
	// is compared with the least-delayed packet so far, so a frame arrives early only
	// when the first packets were held up (then the anchor moves) or when the sender's
	// clock jumped forward.
	maxEarly = time.Second
	// jumpConfirm frames in a row on a new timeline confirm a jump.
	jumpConfirm = 3
)

// heldFrame is a copy of a frame off the current timeline.
type heldFrame struct {
	data    []byte
	ext     int64
	dur     time.Duration
	key     bool
	arrival time.Time
}

// onTimeline reports whether the frame at ext (extended RTP time) arriving at arrival
// belongs on the current part's timeline.
func (p *pipeline) onTimeline(ext int64, arrival time.Time) bool {
	c := p.cur
	pts := p.toDuration(ext - c.baseTS)
	if pts < c.lastPTS {
		return false
	}
	lag := arrival.Sub(c.anchor.Add(pts))
	return lag >= -maxEarly && lag <= maxClockSkew
}

// stale reports whether a frame off the timeline is an old frame of the current one: it
// arrives as late as its timestamp says, but what follows it was written already (a
// block of packets that queues held back and the reorder buffer gave up on, or a
// duplicate under a new sequence number). It is dropped, never taken for a new timeline.
func (p *pipeline) stale(ext int64, arrival time.Time) bool {
	c := p.cur
	pts := p.toDuration(ext - c.baseTS)
	lag := arrival.Sub(c.anchor.Add(pts))
	return pts < c.lastPTS && lag >= -maxEarly && lag <= maxClockSkew
}

// hold keeps a frame that is off the current timeline; jumpConfirm of them in a row on one
// new timeline move the track onto it.
func (p *pipeline) hold(data []byte, ext int64, dur time.Duration, key bool, arrival time.Time) {
	if p.nheld > 0 {
		first, last := &p.held[0], &p.held[p.nheld-1]
		lag := arrival.Sub(first.arrival) - p.toDuration(ext-first.ext)
		if ext < last.ext || lag < -maxEarly || lag > maxClockSkew {
			p.dropHeld()
		}
	}
	h := &p.held[p.nheld]
	h.data = append(h.data[:0], data...)
	h.ext, h.dur, h.key, h.arrival = ext, dur, key, arrival
	p.nheld++
	if p.nheld < jumpConfirm {
		return
	}
	n := p.nheld
	p.nheld = 0
	reason := "timestamp jump"
	if p.restarted {
		reason = "stream restarted"
	}
	p.writePending() // the last frame of the old timeline
	first := &p.held[0]
	if p.mayJump(first.arrival) {
		p.t.log.Info().Str("reason", reason).Msg("The sender's timeline changed; continuing in a new part")
		p.closePart(reason)
	} else if p.cur != nil {
		p.rebase(first.ext, first.arrival)
		p.cur.jumps++
	}
	for i := range n {
		h := &p.held[i]
		p.write(h.data, h.ext, h.dur, h.key, h.arrival)
	}
}

// mayJump decides whether a confirmed timeline jump opens a new part: the track must
// have a token for it and a file (limits.go). Otherwise the track stays in its file.
func (p *pipeline) mayJump(now time.Time) bool {
	t := p.t
	if !p.jumps.take(now, t.jumpBurst, t.jumpEvery) {
		if !p.jumpWarned {
			p.jumpWarned = true
			t.log.Warn().Int("burst", t.jumpBurst).Dur("every", t.jumpEvery).Msg("The sender's timeline keeps jumping; further jumps continue in the same file")
			t.s.AddWarning(fmt.Sprintf("%s: the %s track's timeline jumped more often than a track may start new parts for (%d at once, one more every %v): "+
				"a broken or hostile sender; later jumps continue in the same file at arrival time, counted in its timeline_jumps", t.info.who(), t.info.source(), t.jumpBurst, t.jumpEvery))
		}
		return false
	}
	if !p.claimPart() {
		p.jumps.tokens++ // not spent
		return false
	}
	return true
}

// dropHeld gives up the held frames: the stream went on on the current timeline.
func (p *pipeline) dropHeld() {
	if p.nheld > 0 {
		p.n.dropped += uint64(p.nheld)
		p.nheld = 0
	}
}

// rebase continues the current part on a new timeline: the frame at ext is placed at its
// arrival time (never before the end of what is written), so the jump becomes a gap.
func (p *pipeline) rebase(ext int64, arrival time.Time) {
	c := p.cur
	pts := max(arrival.Sub(c.anchor), c.lastEnd)
	c.baseTS = ext - p.toTicks(pts)
	// The part's offset was for the old base; sender reports must not move it any more.
	c.fixed = true
}

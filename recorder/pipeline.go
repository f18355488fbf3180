package recorder

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/depacketize"
	"github.com/matrix-recorder/matrix-recorder/recorder/jitter"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// pipeline is the per-track state owned by Track.Run's goroutine: ordered packets in,
// frames placed on the timeline and written into parts.
type pipeline struct {
	t   *Track
	src TrackSource
	jb  *jitter.Buffer
	dp  depacketize.Depacketizer
	// dec decrypts frames (WithDecrypter); decrypted is its output buffer.
	dec       FrameDecrypter
	decrypted []byte

	lastPLI time.Time
	// needKey gates video until a keyframe starts the (next) part.
	needKey bool

	haveTS bool
	lastTS uint32
	extTS  int64
	cur    *part

	endReason string
	silence   []byte

	// lostCarry counts packets dropped before the depacketizer (wrong payload type) since the
	// last packet pushed, so that it learns of the hole in the sequence.
	lostCarry int
	// restarted: the jitter buffer saw a new stream (SSRC or sequence jump) and the timeline
	// has not been confirmed since; a split that follows is a restart, not a timestamp jump.
	restarted bool
	// jumps rate-limits the parts opened for timeline jumps (limits.go); jumpWarned and
	// limitWarned: the manifest has its warning that jumps, or the file limit, keep the
	// track in its file.
	jumps       jumpBucket
	jumpWarned  bool
	limitWarned bool
	// noFiles: the participant or the call has no file left for this track.
	noFiles bool
	// wf is the state of a write error (writefail.go).
	wf writeFailure
	// held are frames off the current part's timeline, waiting for jumpConfirm of them in a
	// row before the track follows the new timeline (see timeline.go).
	held  [jumpConfirm]heldFrame
	nheld int
	// pending is the last video frame on the timeline, written when the next one shows it
	// was not replaced by a key frame of the same instant (see keepVideo).
	pending    heldFrame
	hasPending bool

	// opened: the track has had a file (a part was started, even if creating it failed).
	opened bool

	// n counts what happened to the track's packets and frames so far (the reorder buffer
	// and the depacketizer count the rest, see totals); mark is the totals when the last
	// part ended, where the next part's own counts start.
	n    counts
	mark counts
}

// counts are a track's running totals of what its files' stats show. A part's own are the
// totals at its end minus the totals at its start (part.base).
type counts struct {
	packets       jitter.Stats
	unknownPT     uint64
	keyframeReqs  uint64
	undecryptable uint64
	// dropped counts frames lost between the depacketizer and the file.
	dropped uint64
}

// stats are the counts since base, with the part's frames and timeline jumps.
func (c counts) stats(base counts, frames, jumps uint64) TrackStats {
	return TrackStats{
		PacketsReceived:   c.packets.Received - base.packets.Received,
		PacketsLost:       c.packets.Lost - base.packets.Lost,
		PacketsRecovered:  c.packets.Reordered - base.packets.Reordered,
		PacketsDuplicated: c.packets.Duplicates - base.packets.Duplicates,
		PacketsLate:       c.packets.Late - base.packets.Late,
		PacketsMalformed:  c.packets.Malformed - base.packets.Malformed,
		PacketsUnknownPT:  c.unknownPT - base.unknownPT,
		Frames:            frames,
		FramesDropped:     c.dropped - base.dropped,
		KeyframeRequests:  c.keyframeReqs - base.keyframeReqs,
		FramesUndecrypted: c.undecryptable - base.undecryptable,
		TimelineJumps:     jumps,
	}
}

// part is one file of the track.
type part struct {
	file   string
	num    int
	w      media.Writer
	baseTS int64
	// anchor estimates the local time of PTS 0 from arrivals: the smallest
	// arrival - PTS seen, i.e. the packet that waited least (a burst of queued packets
	// all arrive "late" and must not move the track later on the timeline).
	anchor    time.Time
	startedAt time.Time
	offset    time.Duration
	// srOffset: offset comes from sender reports; fixed: offset is final (the part's
	// timeline was rebased, see timeline.go).
	srOffset bool
	fixed    bool
	drift    driftMeter

	lastPTS  time.Duration
	lastEnd  time.Duration
	frameDur time.Duration
	frames   uint64
	bytes    uint64
	gaps     []Gap
	omitted  int
	base     counts
	width    int
	height   int
	// jumps counts the timeline jumps this file followed at arrival time instead of
	// ending (see limits.go).
	jumps uint64
}

func newPipeline(t *Track, src TrackSource, dec FrameDecrypter) *pipeline {
	var dopts []depacketize.Option
	if dec != nil {
		// Frames are decrypted after depacketizing: their bytes are opaque here.
		dopts = append(dopts, depacketize.WithOpaquePayload())
	}
	p := &pipeline{
		t: t, src: src, jb: newJitter(t), dp: t.codec.Depacketizer(dopts...), dec: dec, needKey: t.codec.IsVideo(),
	}
	if p.needKey {
		p.requestKeyframe(t.s.rec.opts.Now())
	}
	return p
}

func (p *pipeline) requestKeyframe(now time.Time) {
	if !p.t.codec.IsVideo() || now.Sub(p.lastPLI) < keyframeInterval {
		return
	}
	p.lastPLI = now
	p.n.keyframeReqs++
	p.src.RequestKeyframe()
}

// packet handles one released packet.
func (p *pipeline) packet(pkt *jitter.Packet) {
	if pkt.Reset {
		// A new stream (new SSRC, or a sequence jump): frames in flight are gone. Its
		// timestamps are judged like any others (timeline.go): a stream that continues the
		// timeline stays in the part, one that does not starts the next part once confirmed,
		// and a single stray packet cannot split the file.
		p.dp.Reset()
		p.lostCarry = 0
		p.restarted = true
	}
	if pt := p.t.info.PayloadType; pt != 0 && pkt.PayloadType != pt {
		// Not media of this track, but a place in its sequence: the depacketizer must hear of
		// the hole (with the losses before it), or it could join the frames around it.
		p.n.unknownPT++
		p.lostCarry += pkt.LostBefore + 1
		return
	}
	lost := pkt.LostBefore + p.lostCarry
	p.lostCarry = 0
	frames := p.dp.Push(&pkt.Packet, lost)
	if p.dp.NeedKeyframe() {
		p.requestKeyframe(pkt.Arrival)
	}
	for _, f := range frames {
		p.frame(f.Data, f.RTPTimestamp, f.Keyframe, pkt.Arrival)
	}
}

// totals are the track's counts so far.
func (p *pipeline) totals() counts {
	c := p.n
	c.packets = p.jb.Stats()
	ds := p.dp.Stats()
	c.dropped += ds.Incomplete + ds.Oversized + ds.Undecodable + ds.Malformed
	return c
}

// unwrap extends a 32-bit RTP timestamp to 64 bits, relative to the last frame written
// (not the last one seen): a stray timestamp half the clock away must not move the
// reference, or every later frame would be off by 2^32.
func (p *pipeline) unwrap(ts uint32) int64 {
	if !p.haveTS {
		return int64(ts)
	}
	return p.extTS + int64(int32(ts-p.lastTS))
}

// accept makes ext the reference of unwrap.
func (p *pipeline) accept(ext int64) {
	p.haveTS, p.extTS, p.lastTS = true, ext, uint32(ext)
}

// toDuration converts RTP clock ticks to time without overflowing for any tick count.
func (p *pipeline) toDuration(ticks int64) time.Duration {
	rate := int64(p.t.info.ClockRate)
	return time.Duration(ticks/rate*int64(time.Second) + ticks%rate*int64(time.Second)/rate)
}

// toTicks converts time to RTP clock ticks.
func (p *pipeline) toTicks(d time.Duration) int64 {
	rate := int64(p.t.info.ClockRate)
	return int64(d/time.Second)*rate + int64(d%time.Second)*rate/int64(time.Second)
}

// frame places one complete frame on the timeline and writes it.
func (p *pipeline) frame(data []byte, ts uint32, keyframe bool, arrival time.Time) {
	if p.hasPending && !(keyframe && p.sameInstant(ts)) {
		p.writePending()
	}
	ext := p.unwrap(ts)
	if p.dec != nil {
		out, err := p.dec.DecryptFrame(p.decrypted[:0], data, keyframe)
		if err != nil {
			p.n.undecryptable++
			return
		}
		p.decrypted = out
		data = out
	}
	var dur time.Duration
	if !p.t.codec.IsVideo() {
		keyframe = true
		d, err := p.t.codec.Audio.Duration(data)
		if err != nil {
			p.n.dropped++
			return
		}
		dur = d
	}
	if p.cur != nil && !p.onTimeline(ext, arrival) {
		if p.stale(ext, arrival) {
			p.n.dropped++
			return
		}
		p.hold(data, ext, dur, keyframe, arrival)
		return
	}
	p.dropHeld()
	if p.t.codec.IsVideo() {
		p.keepVideo(data, ext, keyframe, arrival)
		return
	}
	p.write(data, ext, dur, keyframe, arrival)
}

// keepVideo holds a video frame back until the next one arrives (frame writes it then,
// unless the next is a key frame of the same instant, which replaces it): an SFU that moves
// the bot to another simulcast layer (LiveKit, as its bandwidth estimate grows) forwards the
// new layer's key frame at (or a tick after) the RTP timestamp of the old layer's last
// frame. Two pictures of one instant would be two blocks at one time in the file (ffmpeg and
// players take that as non-monotonic timestamps); the key frame is kept, since what follows
// depends on it.
func (p *pipeline) keepVideo(data []byte, ext int64, keyframe bool, arrival time.Time) {
	if p.hasPending {
		p.t.log.Debug().Msg("A key frame replaces the frame of its instant (simulcast layer switch)")
	}
	f := &p.pending
	f.data = append(f.data[:0], data...)
	f.ext, f.dur, f.key, f.arrival = ext, 0, keyframe, arrival
	p.hasPending = true
}

// sameInstant reports whether a frame at RTP time ts shows the instant of the pending one.
// LiveKit gives the new layer's key frame the old layer's timestamp as mapped through the
// sender reports, or one tick after the last one when that mapping falls just behind it; a
// real next frame comes at least a frame interval (16.7 ms at 60 fps) later.
func (p *pipeline) sameInstant(ts uint32) bool {
	d := int64(int32(ts - uint32(p.pending.ext)))
	win := int64(p.t.info.ClockRate) * int64(sameInstantWindow) / int64(time.Second)
	return d >= -win && d <= win
}

// sameInstantWindow: frames closer than this are of one instant (see sameInstant).
const sameInstantWindow = 4 * time.Millisecond

// pendingMaxWait: a flush writes the pending video frame once it waited this long for the
// next one (the stream paused), so it is not kept from the file for long; a fresh one waits
// for the next frame, which may replace it.
const pendingMaxWait = 250 * time.Millisecond

// writePending writes the video frame keepVideo kept back, if any.
func (p *pipeline) writePending() {
	if !p.hasPending {
		return
	}
	p.hasPending = false
	f := &p.pending
	p.write(f.data, f.ext, f.dur, f.key, f.arrival)
}

// write writes a frame that is on the current part's timeline, or opens the next part
// with it.
func (p *pipeline) write(data []byte, ext int64, dur time.Duration, keyframe bool, arrival time.Time) {
	p.accept(ext)
	video := p.t.codec.IsVideo()
	if c := p.cur; c != nil {
		pts := p.toDuration(ext - c.baseTS)
		if pts < c.lastPTS {
			p.n.dropped++
			return
		}
		p.restarted = false
		gap := pts - c.lastEnd
		if p.t.s.rec.opts.GapPolicy == GapSplit && gap >= p.t.s.rec.opts.SplitAfter && p.claimPart() {
			p.noteGap(c.lastEnd, gap, GapActionNewPart)
			p.closePart("gap")
		} else {
			p.noteGap(c.lastEnd, gap, p.gapAction())
			if lag := arrival.Sub(c.anchor.Add(pts)); lag < 0 {
				c.anchor = arrival.Add(-pts)
			}
		}
	}
	if p.cur == nil {
		if p.noFiles || !p.writable(arrival) {
			p.n.dropped++
			return
		}
		if video && !keyframe {
			p.needKey = true
			p.n.dropped++
			p.requestKeyframe(arrival)
			return
		}
		if !p.openPart(ext, arrival) {
			p.n.dropped++
			return
		}
	}
	pts := p.toDuration(ext - p.cur.baseTS)
	if !video {
		pts = p.audioGrid(pts)
		p.silenceUntil(pts)
	}
	err := p.cur.w.WriteFrame(media.Frame{Data: data, PTS: pts, Duration: dur, Keyframe: keyframe})
	if errors.Is(err, media.ErrNewPart) {
		if !p.claimPart() {
			p.n.dropped++
			return
		}
		p.closePart("codec parameters changed")
		if !p.openPart(ext, arrival) {
			p.n.dropped++
			return
		}
		pts = 0
		err = p.cur.w.WriteFrame(media.Frame{Data: data, PTS: 0, Duration: dur, Keyframe: keyframe})
	}
	if errors.Is(err, media.ErrWrite) {
		p.n.dropped++
		p.writeFailed(err, arrival)
		return
	}
	if err != nil {
		p.n.dropped++
		p.t.log.Debug().Err(err).Msg("Frame not written")
		if video {
			p.requestKeyframe(arrival)
		}
		return
	}
	c := p.cur
	c.frames++
	c.bytes += uint64(len(data))
	if video && pts > c.lastPTS && c.frames > 1 {
		// A running estimate of the frame interval, for the last frame's duration.
		c.frameDur = pts - c.lastPTS
	}
	c.lastPTS = pts
	if video {
		c.lastEnd = pts
	} else {
		c.lastEnd = pts + dur
	}
	c.drift.add(pts, arrival)
}

// audioGrid places an audio frame at pts on the grid of its codec's shortest frame (Opus:
// 2.5 ms), counted from the end of the previous one. Every frame lasts a multiple of it, so
// only a gap of such a multiple can be filled with frames; any other gap would stay a jump
// in the granule positions that no packet fills (players then decode fewer samples than
// the granules say, and the file drifts out of sync by the rest). A sender's timestamp that
// misses the previous frame's end by less than one grid step is jitter in its clock, not a
// gap or an overlap: the frame goes right after the previous one (written as is, it could
// be a frame the writer refuses as backwards). A later one moves to the nearest step after
// it, at most half a step from its timestamp; the error never adds up, since each frame is
// placed from its own timestamp.
func (p *pipeline) audioGrid(pts time.Duration) time.Duration {
	c := p.cur
	grid := p.t.codec.Audio.Grid
	if c.frames == 0 || pts == c.lastEnd {
		return pts
	}
	switch d := pts - c.lastEnd; {
	case d > -grid && d < grid:
		return c.lastEnd
	case d > 0:
		return c.lastEnd + (d+grid/2)/grid*grid
	default:
		return pts // backwards: the writer refuses it
	}
}

// concealMax is the longest audio gap left to the decoder's loss concealment (packet loss);
// longer gaps (DTX silence, a muted microphone) are written as digital silence, so that
// every player and editor keeps the file as long as the call (see oggwriter's findings).
const concealMax = 120 * time.Millisecond

// silenceUntil writes 20 ms silence frames from the end of the last frame up to pts when
// the gap is longer than concealMax; the writer conceals whatever is left (< 20 ms).
func (p *pipeline) silenceUntil(pts time.Duration) {
	c := p.cur
	if p.t.s.rec.opts.GapPolicy == GapFill || c.frames == 0 || pts-c.lastEnd <= concealMax {
		return
	}
	if p.silence == nil {
		p.silence, _ = p.t.codec.Audio.Silence(20 * time.Millisecond)
	}
	for t := c.lastEnd; pts-t >= 20*time.Millisecond; t += 20 * time.Millisecond {
		if err := c.w.WriteFrame(media.Frame{Data: p.silence, PTS: t, Duration: 20 * time.Millisecond, Keyframe: true}); err != nil {
			// A write error shows again with the frame that follows.
			p.t.log.Debug().Err(err).Msg("Silence not written")
			return
		}
		c.lastEnd = t + 20*time.Millisecond
	}
}

func (p *pipeline) gapAction() string {
	if p.t.codec.IsVideo() {
		return GapActionTimestamp
	}
	if p.t.s.rec.opts.GapPolicy == GapFill {
		return GapActionSilence
	}
	return GapActionKept
}

// noteGap lists a gap in the current part's manifest entry. Gaps separated by less than
// gapMerge of media are one gap: Opus DTX sends a short frame every 400 ms of silence.
func (p *pipeline) noteGap(at, d time.Duration, action string) {
	c := p.cur
	min := minAudioGap
	if p.t.codec.IsVideo() {
		min = minVideoGap
	}
	if d < min {
		return
	}
	if n := len(c.gaps); n > 0 && c.gaps[n-1].Action == action {
		last := &c.gaps[n-1]
		if at-time.Duration(last.AtMs+last.DurationMs)*time.Millisecond <= gapMerge {
			last.DurationMs = (at + d).Milliseconds() - last.AtMs
			return
		}
	}
	if len(c.gaps) >= maxListedGaps {
		c.omitted++
		return
	}
	c.gaps = append(c.gaps, Gap{AtMs: at.Milliseconds(), DurationMs: d.Milliseconds(), Action: action})
}

// openPart starts the next file of the track with the frame at ext.
func (p *pipeline) openPart(ext int64, arrival time.Time) bool {
	s := p.t.s
	wall, fromSR := p.wallClock(ext, arrival)
	offset := wall.Sub(s.t0)
	file, num, err := s.newPart(p.t, offset, arrival)
	if err != nil {
		p.outOfFiles(err)
		return false
	}
	p.opened = true
	s.rec.opts.Hooks.partStart(s, s.fileEntry(file))
	w, err := s.rec.newWriter(p.t, s.path(file), s.rec.opts)
	if err != nil {
		s.updateEntry(file, true, func(e *FileEntry) {
			e.Status = StatusInterrupted
			e.EndReason = "could not create file: " + err.Error()
		})
		s.rec.opts.Hooks.partComplete(s, s.fileEntry(file))
		p.writeFailedIn(file, err, arrival)
		return false
	}
	p.cur = &part{
		file: file, num: num, w: w, baseTS: ext, anchor: arrival, startedAt: arrival,
		offset: offset, srOffset: fromSR,
		base: p.mark,
	}
	p.needKey = false
	p.t.log.Info().Str("file", file).Int64("start_offset_ms", offset.Milliseconds()).Bool("from_sender_report", fromSR).Msg("Writing part")
	p.writeResumed()
	return true
}

// claimPart reserves a file for a part the track opens by itself (a gap, new codec
// parameters, a timeline jump), before it ends the current one. Without one the track
// stays in its file (see limits.go).
func (p *pipeline) claimPart() bool {
	if err := p.t.claimPart(); err != nil {
		p.limitReached(err)
		return false
	}
	return true
}

// limitReached says once in the manifest that the track stays in its file because the
// participant or the call has no file left.
func (p *pipeline) limitReached(err error) {
	if p.limitWarned {
		return
	}
	p.limitWarned = true
	p.t.log.Warn().Err(err).Msg("No file left for a new part; the track goes on in its file")
	p.t.s.AddWarning(fmt.Sprintf("%s: the %s track stays in its file where it would start a new part: %v", p.t.info.who(), p.t.info.source(), err))
}

// outOfFiles ends the track's writing when no file is left for its next part at all.
func (p *pipeline) outOfFiles(err error) {
	p.noFiles = true
	p.t.log.Warn().Err(err).Msg("No file left for this track; its media is dropped")
	p.t.s.AddWarning(fmt.Sprintf("%s: the %s track could not get a file, its media after this is not recorded: %v", p.t.info.who(), p.t.info.source(), err))
}

// wallClock maps an RTP timestamp to local wall-clock time: through the sender's RTCP
// sender report and the clock domain's offset when both are known, else the arrival time.
func (p *pipeline) wallClock(ext int64, arrival time.Time) (time.Time, bool) {
	sr, ok := p.t.senderReport()
	if !ok {
		return arrival, false
	}
	off, ok := p.t.s.clockOffset(p.t.info.ClockDomain)
	if !ok {
		return arrival, false
	}
	delta := int64(int32(uint32(ext) - sr.rtp))
	w := sr.ntp.Add(p.toDuration(delta)).Add(off)
	// A report that disagrees wildly with arrival is not trusted.
	if d := w.Sub(arrival); d > maxClockSkew || d < -maxClockSkew {
		return arrival, false
	}
	return w, true
}

// flush pushes buffered media to the file and refreshes the manifest entry.
func (p *pipeline) flush(now time.Time) {
	if p.hasPending && now.Sub(p.pending.arrival) >= pendingMaxWait {
		p.writePending()
	}
	c := p.cur
	if c == nil {
		p.retryWrite(now)
		p.t.s.tick()
		return
	}
	if err := c.w.Flush(); errors.Is(err, media.ErrWrite) {
		p.writeFailed(err, now)
		return
	} else if err != nil {
		p.t.log.Warn().Err(err).Str("file", c.file).Msg("Flush failed")
	}
	p.refineOffset(c, now)
	p.t.s.updateEntry(c.file, false, func(e *FileEntry) { p.fillEntry(e, c) })
}

// refineOffset places the part on the call's timeline with what is known by now: through
// the sender's reports when there are any, else through the least-delayed arrival. Both
// only get better as reports and packets come in; only the part's first srRefineWindow
// counts, so that clock drift over a long part does not move its start.
func (p *pipeline) refineOffset(c *part, now time.Time) {
	if c.fixed || now.Sub(c.startedAt) >= srRefineWindow {
		return
	}
	if w, ok := p.wallClock(c.baseTS, c.anchor); ok {
		c.offset, c.srOffset = w.Sub(p.t.s.t0), true
	} else if !c.srOffset {
		c.offset = c.anchor.Sub(p.t.s.t0)
	}
}

func (p *pipeline) duration(c *part) time.Duration {
	if p.t.codec.IsVideo() {
		return c.lastEnd + c.frameDur
	}
	return c.lastEnd
}

func (p *pipeline) fillEntry(e *FileEntry, c *part) {
	e.StartOffsetMs = max(c.offset.Milliseconds(), 0)
	e.StartedAt = p.t.s.t0.Add(c.offset).UTC()
	e.DurationMs = p.duration(c).Milliseconds()
	e.Bytes = int64(c.bytes)
	e.Stats = p.totals().stats(c.base, c.frames, c.jumps)
	if sz, ok := c.w.(interface{ Size() (int, int) }); ok && c.width == 0 {
		c.width, c.height = sz.Size()
	}
	e.CodecParams.Width, e.CodecParams.Height = c.width, c.height
	e.Gaps = append(e.Gaps[:0], c.gaps...)
	e.GapsOmitted = c.omitted
	if ppm, ok := c.drift.ppm(); ok && !c.fixed {
		e.ClockDriftPPM = &ppm
	}
}

// closePart finalises the current file and its manifest entry.
func (p *pipeline) closePart(reason string) {
	c := p.cur
	if c == nil {
		return
	}
	p.cur = nil
	p.refineOffset(c, p.t.s.rec.opts.Now())
	p.needKey = p.t.codec.IsVideo()
	p.mark = p.totals()
	if sz, ok := c.w.(interface{ Size() (int, int) }); ok {
		c.width, c.height = sz.Size()
	}
	err := c.w.Close()
	// handled: the close failed with the write error that ends the part (writeFailed),
	// which is logged and reported there.
	handled := err != nil && p.wf.err != nil && p.wf.file == c.file
	// A file that closed cleanly is final now, and its entry says so at once; its SHA-256
	// (a second read of the whole file: seconds for a long video) follows from another
	// goroutine (digestLater), so that neither this track nor the end of the call waits
	// for it. A file whose close failed may be repaired (rewritten) by this goroutine
	// next: it is hashed here, before that.
	var size int64
	var sum string
	var derr error
	if err == nil {
		var st os.FileInfo
		if st, derr = os.Stat(p.t.s.path(c.file)); derr == nil {
			size = st.Size()
		}
	} else {
		size, sum, derr = p.t.s.rec.digest(p.t.s.path(c.file))
	}
	end := p.t.s.t0.Add(c.offset).Add(p.duration(c))
	p.t.s.updateEntry(c.file, true, func(e *FileEntry) {
		p.fillEntry(e, c)
		e.Status = StatusComplete
		e.EndReason = reason
		ended := end.UTC()
		e.EndedAt = &ended
		if derr == nil {
			e.Bytes = size
			e.SHA256 = sum
		}
		switch {
		case handled:
			// The write error that ended the part is its reason already.
			e.Status = StatusInterrupted
		case err != nil:
			e.Status = StatusInterrupted
			e.EndReason = reason + "; finalising failed: " + err.Error()
		}
	})
	if err == nil {
		p.t.s.digestLater(c.file)
	} else {
		p.t.s.rec.opts.Hooks.partComplete(p.t.s, p.t.s.fileEntry(c.file))
	}
	if errors.Is(err, media.ErrWrite) && p.wf.file != c.file {
		// The file could not be finished (a full disk at its end): repair it once the
		// folder takes writes again.
		p.wf.unfinished = append(p.wf.unfinished, c.file)
	}
	ev := p.t.log.Info()
	if err != nil && !handled {
		ev = p.t.log.Error().Err(err)
	}
	ev.Str("file", c.file).Str("reason", reason).Dur("duration", p.duration(c)).Uint64("frames", c.frames).Msg("Part finished")
}

// finish closes the last part when the track ends.
func (p *pipeline) finish() {
	reason := p.endReason
	if reason == "" {
		reason = "recording stopped"
	}
	p.dropHeld()
	p.writePending()
	p.closePart(reason)
	p.repairBroken()
	p.warnIfNothingWritten()
}

// warnIfNothingWritten says in the manifest when a track received media but never had a
// file: without it, a camera whose key frame never came (or whose frames could not be
// decrypted) would leave no trace at all.
func (p *pipeline) warnIfNothingWritten() {
	received := p.jb.Stats().Received
	if p.opened || received == 0 {
		return
	}
	why := "no frame could be written"
	switch {
	case p.n.undecryptable > 0:
		why = fmt.Sprintf("%d frame(s) could not be decrypted", p.n.undecryptable)
	case p.t.codec.IsVideo():
		why = "no key frame arrived to start the video"
	}
	i := p.t.info
	p.t.s.AddWarning(fmt.Sprintf("%s: %s %s track received %d packet(s) but has no file: %s", i.who(), i.source(), p.t.codec.ID, received, why))
	p.t.log.Warn().Uint64("packets", received).Str("why", why).Msg("Track received media but nothing was written")
}

package recorder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
	"github.com/matrix-recorder/matrix-recorder/recorder/jitter"
)

// Tunables of the track loop.
const (
	// keyframeInterval rate-limits keyframe requests (PLI).
	keyframeInterval = time.Second
	// maxClockSkew: when RTP time and arrival time disagree by more than this, the sender's
	// timestamps are not trustworthy any more (a jump, a pause) and the track continues in a
	// new part anchored at the arrival time.
	maxClockSkew = 5 * time.Second
	// gapMerge merges gaps separated by less media than this (Opus DTX sends a short
	// comfort-noise frame every 400 ms of silence; that is one gap, not dozens).
	gapMerge = 120 * time.Millisecond
	// minAudioGap and minVideoGap are the smallest gaps listed in the manifest.
	minAudioGap = 40 * time.Millisecond
	minVideoGap = 2 * time.Second
	// maxListedGaps bounds the manifest's gap list per file.
	maxListedGaps = 2000
	// maxReadErrors ends a track whose source keeps failing without delivering a packet.
	maxReadErrors = 1000
	// srRefineWindow: a part's start offset is refined by the first sender report that
	// arrives within this time of the part's start.
	srRefineWindow = 30 * time.Second
	// videoJitterCapacity and audioJitterCapacity are the most packets a track's reorder
	// buffer holds behind a missing one. Audio packets are small and regular (20 ms):
	// 128 is 2.5 s, far beyond audio_jitter, and keeps an audio track's buffer at 30 KB
	// (each slot is about 220 bytes before its packet).
	videoJitterCapacity = 2048
	audioJitterCapacity = 128
)

// Track records one incoming RTP stream. Parts of it are separate files of one logical track.
type Track struct {
	s     *Session
	info  TrackInfo
	codec *codec.Spec
	lid   string
	log   zerolog.Logger

	stopOnce sync.Once
	stopCh   chan struct{}
	srcMu    sync.Mutex
	src      TrackSource

	srMu   sync.Mutex
	sr     senderReport
	haveSR bool

	// claims counts the files reserved for this track's next parts (claimFileLocked),
	// under the session lock.
	claims int
	// jumpBurst and jumpEvery rate-limit the parts the track opens for timeline jumps
	// (partJumpBurst, partJumpEvery; tests change them).
	jumpBurst int
	jumpEvery time.Duration
	// running: Run has begun (Session.running counts it), under the session lock.
	running bool
}

type senderReport struct {
	ntp     time.Time
	rtp     uint32
	arrival time.Time
}

// AddTrack registers a new track of the call. The caller then runs Track.Run with the
// track's source.
func (s *Session) AddTrack(info TrackInfo) (*Track, error) {
	c, ok := info.Codec()
	if !ok {
		return nil, fmt.Errorf("codec %q cannot be recorded", info.MimeType)
	}
	if info.ClockRate == 0 {
		return nil, errors.New("track has no clock rate")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, ErrSessionClosed
	}
	// The track's first file is reserved now, so that a participant at its limit is told
	// at once rather than when media comes.
	if err := s.claimFileLocked(info.UserID); err != nil {
		return nil, err
	}
	t := &Track{
		s: s, info: info, codec: c, lid: info.logicalID(), stopCh: make(chan struct{}),
		claims: 1, jumpBurst: partJumpBurst, jumpEvery: partJumpEvery,
	}
	t.log = s.log.With().Str("user_id", info.UserID).Str("device_id", info.DeviceID).Str("track", t.lid).Uint32("ssrc", info.SSRC).Logger()
	s.active[t] = struct{}{}
	s.done.Add(1)
	return t, nil
}

// onSenderReport takes an RTCP sender report of the track's sender, from its source on any
// goroutine.
func (t *Track) onSenderReport(sr SenderReport) {
	if sr.NTPTime == 0 {
		return
	}
	nt := ntpToTime(sr.NTPTime)
	t.srMu.Lock()
	t.sr = senderReport{ntp: nt, rtp: sr.RTPTime, arrival: sr.Arrival}
	t.haveSR = true
	t.srMu.Unlock()
	t.s.observeClock(t.info.ClockDomain, sr.Arrival.Sub(nt), sr.Arrival)
}

func (t *Track) senderReport() (senderReport, bool) {
	t.srMu.Lock()
	defer t.srMu.Unlock()
	return t.sr, t.haveSR
}

// ntpToTime converts the RTCP NTP format (seconds since 1900 in 32.32 fixed point).
func ntpToTime(ntp uint64) time.Time {
	const ntpEpochOffset = 2208988800
	secs := int64(ntp>>32) - ntpEpochOffset
	frac := ntp & 0xffffffff
	return time.Unix(secs, int64(frac*1e9>>32))
}

// stop asks Run to finish: it wakes a blocked read and makes the loop drain and finalise.
func (t *Track) stop() {
	t.stopOnce.Do(func() { close(t.stopCh) })
	t.srcMu.Lock()
	if t.src != nil {
		_ = t.src.SetReadDeadline(time.Now())
	}
	t.srcMu.Unlock()
}

func (t *Track) stopping() bool {
	select {
	case <-t.stopCh:
		return true
	default:
		return false
	}
}

// Run records the track from src until it ends, ctx ends or the session closes, then
// finalises the current part. Every packet is processed on Run's goroutine as it is read.
func (t *Track) Run(ctx context.Context, src TrackSource, opts ...RunOption) error {
	var cfg runConfig
	for _, o := range opts {
		o(&cfg)
	}
	defer t.s.trackDone(t)
	t.s.trackRunning(t)
	t.srcMu.Lock()
	t.src = src
	t.srcMu.Unlock()
	if t.stopping() {
		_ = src.SetReadDeadline(time.Now())
	}
	stopWatch := context.AfterFunc(ctx, t.stop)
	defer stopWatch()
	stopReports := src.SenderReports(t.onSenderReport)
	defer stopReports()

	p := newPipeline(t, src, cfg.dec)
	defer p.finish()
	clock := t.s.rec.opts.Now
	buf := make([]byte, 1600)
	flushEvery := t.s.rec.opts.FlushInterval
	nextFlush := clock().Add(flushEvery)
	var deadline time.Time
	readErrors := 0
	for {
		if t.stopping() {
			p.takeHeld(buf)
			p.drain()
			return nil
		}
		want := nextFlush
		if d, ok := p.jb.NextDeadline(); ok && d.Before(want) {
			want = d
		}
		if !want.Equal(deadline) {
			deadline = want
			if err := src.SetReadDeadline(deadline); err != nil {
				return fmt.Errorf("set read deadline: %w", err)
			}
		}
		n, err := src.ReadPacket(buf)
		now := clock()
		switch {
		case err == nil:
			readErrors = 0
			p.push(buf[:n], now)
		case isTimeout(err):
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed):
			p.drain()
			p.endReason = "track ended"
			return nil
		default:
			// pion reports a packet with a payload type never negotiated as an error of
			// Read; count it and go on.
			p.n.unknownPT++
			readErrors++
			if readErrors > maxReadErrors {
				p.endReason = "read errors"
				return fmt.Errorf("read rtp: %w", err)
			}
		}
		p.pop(now)
		if !now.Before(nextFlush) {
			p.flush(now)
			nextFlush = now.Add(flushEvery)
		}
	}
}

// newJitter returns the reorder buffer of a track.
func newJitter(t *Track) *jitter.Buffer {
	if t.codec.IsVideo() {
		// A video keyframe can be hundreds of packets; the default capacity would release
		// a frame before its retransmitted packets arrive.
		return jitter.New(t.s.rec.opts.VideoJitter, jitter.WithCapacity(videoJitterCapacity))
	}
	return jitter.New(t.s.rec.opts.AudioJitter, jitter.WithCapacity(audioJitterCapacity))
}

// push puts one packet read at now into the reorder buffer.
func (p *pipeline) push(b []byte, now time.Time) {
	if _, err := p.jb.Push(b, now); err != nil {
		p.t.log.Trace().Err(err).Msg("Dropping malformed packet")
	}
}

// pop processes the packets the reorder buffer releases at now.
func (p *pipeline) pop(now time.Time) {
	for pkt, ok := p.jb.Pop(now); ok; pkt, ok = p.jb.Pop(now) {
		p.packet(pkt)
	}
}

// drain processes every packet the reorder buffer holds: the track ends.
func (p *pipeline) drain() {
	for pkt, ok := p.jb.Drain(); ok; pkt, ok = p.jb.Drain() {
		p.packet(pkt)
	}
}

// takeHeld reads what the source still holds back when the track stops (an encrypted
// track's frames waiting for their key), so that it is recorded, or counted as
// undecryptable, instead of vanishing unseen.
func (p *pipeline) takeHeld(buf []byte) {
	if !p.src.ReleaseHeld() {
		return
	}
	_ = p.src.SetReadDeadline(time.Now())
	for range 1 << 16 { // bounded: a source only has so much held
		n, err := p.src.ReadPacket(buf)
		if err != nil {
			return
		}
		p.push(buf[:n], p.t.s.rec.opts.Now())
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func (s *Session) trackRunning(t *Track) {
	s.mu.Lock()
	if !t.running {
		t.running = true
		s.running++
	}
	s.mu.Unlock()
}

// trackDone forgets a track that stopped: its unused file reservations go back, and the
// manifest changes it left pending are written now if no running track will.
func (s *Session) trackDone(t *Track) {
	s.mu.Lock()
	if _, ok := s.active[t]; ok {
		delete(s.active, t)
		s.releaseFilesLocked(t)
		if t.running {
			s.running--
		}
		s.persistLocked(s.running == 0)
	}
	s.mu.Unlock()
	s.done.Done()
}

// observeClock records one sample of (local arrival - sender NTP) for a clock domain. The
// sample with the least network delay maps sender time best, so the domain keeps the
// smallest, over a sliding window (two windows of clockWindow) so that it follows the slow
// drift between the sender's clock and ours during a long call.
func (s *Session) observeClock(domain string, offset time.Duration, at time.Time) {
	if domain == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.domains[domain]
	if d == nil {
		d = &clockDomain{}
		s.domains[domain] = d
	}
	switch {
	case !d.haveCur:
		d.cur, d.curStart, d.haveCur = offset, at, true
	case at.Sub(d.curStart) >= clockWindow:
		d.prev, d.havePrev = d.cur, true
		d.cur, d.curStart = offset, at
	case offset < d.cur:
		d.cur = offset
	}
}

func (s *Session) clockOffset(domain string) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.domains[domain]
	if d == nil || !d.haveCur {
		return 0, false
	}
	if d.havePrev && d.prev < d.cur {
		return d.prev, true
	}
	return d.cur, true
}

// clockDomain maps one sender's NTP clock to the local clock: the least (arrival - NTP)
// of the current window of sender reports and of the one before.
type clockDomain struct {
	cur, prev         time.Duration
	haveCur, havePrev bool
	curStart          time.Time
}

// clockWindow is the length of one window of clock samples.
const clockWindow = 30 * time.Second

// newPart registers the next file of a logical track in the manifest and returns its name
// and part number. It takes a file the track reserved, or reserves one now; it fails
// (ErrFileLimit) when the participant or the call has no file left.
func (s *Session) newPart(t *Track, startOffset time.Duration, started time.Time) (file string, part int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.claims == 0 {
		if err := s.claimFileLocked(t.info.UserID); err != nil {
			return "", 0, err
		}
		t.claims++
	}
	t.claims--
	s.unreserveLocked(t.info.UserID)
	e := s.addPartLocked(t.lid, t.codec.Container.Extension, t.info, t.codec.Kind.String(), string(t.codec.ID), startOffset, started)
	// Read the entry before noting the change: that may reorder the manifest's tracks,
	// and e would then point at another file's entry.
	file, part = e.File, e.Part
	s.changedLocked(true)
	return file, part, nil
}

// addPartLocked lists the next part of logical track lid in the manifest: its file is named
// after the track, its part number and ext, and it starts recording at started, startOffset
// into the call. The caller holds a file for it (claimFileLocked), completes the entry and
// then notes the change (changedLocked). The entry returned is valid until the manifest
// changes.
func (s *Session) addPartLocked(lid, ext string, info TrackInfo, kind, codec string, startOffset time.Duration, started time.Time) *FileEntry {
	s.logical[lid]++
	part := s.logical[lid]
	file := lid + ext
	if part > 1 {
		file = fmt.Sprintf("%s.part%d%s", lid, part, ext)
	}
	s.manifest.Tracks = append(s.manifest.Tracks, FileEntry{
		File: file, Track: lid, Part: part,
		UserID: info.UserID, DeviceID: info.DeviceID, DisplayName: info.DisplayName,
		Kind: kind, Codec: codec, Purpose: info.purpose(), Source: info.source(),
		CodecParams:   CodecParams{MimeType: info.MimeType, ClockRate: info.ClockRate, Channels: info.Channels, Fmtp: info.Fmtp},
		StartOffsetMs: max(startOffset.Milliseconds(), 0), StartedAt: started.UTC(), Status: StatusRecording,
		Gaps: []Gap{},
	})
	return &s.manifest.Tracks[len(s.manifest.Tracks)-1]
}

// updateEntry changes a file's manifest entry under the session lock. structural says
// whether the change must reach the disk durably (a file finished) or is a refresh of
// durations and counters.
func (s *Session) updateEntry(file string, structural bool, fn func(e *FileEntry)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.manifest.Tracks {
		if s.manifest.Tracks[i].File == file {
			fn(&s.manifest.Tracks[i])
			break
		}
	}
	s.changedLocked(structural)
}

// digestLater computes the SHA-256 of a part that just closed cleanly and puts it, with
// the size, into its entry, on a goroutine of its own: the entry says complete before
// that. It then calls OnPartComplete, so the hook still sees the digest. A session hashes
// one file at a time (a long call ends with all its files at once, and the disk reads
// them faster one after the other); end waits for every digest before the last manifest
// write and OnSessionEnd.
//
// A track that ends after the session stopped waiting for digests (its Close gave up on
// it) hashes its file on its own goroutine instead, as before.
func (s *Session) digestLater(file string) {
	digest := func() {
		s.digestMu.Lock()
		size, sum, err := s.rec.digest(s.path(file))
		s.digestMu.Unlock()
		if err != nil {
			s.log.Warn().Err(err).Str("file", file).Msg("Could not compute the SHA-256 of a finished file")
		} else {
			s.updateEntry(file, false, func(e *FileEntry) { e.Bytes, e.SHA256 = size, sum })
		}
		s.rec.opts.Hooks.partComplete(s, s.fileEntry(file))
	}
	s.mu.Lock()
	late := s.digestsWaited
	if !late {
		s.digests.Add(1) // under mu, so before end's Wait (see digestsWaited)
	}
	s.mu.Unlock()
	if late {
		digest()
		return
	}
	go func() {
		defer s.digests.Done()
		digest()
	}()
}

// fileDigest returns the size and SHA-256 of a finished file.
func fileDigest(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return n, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func (s *Session) path(file string) string { return filepath.Join(s.folder, file) }

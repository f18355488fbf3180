package livekit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/call/livekit/framecrypt"
	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// rtpReader is where a source reads RTP packets: a pion TrackRemote through trackReader.
type rtpReader interface {
	ReadRTPBytes(b []byte) (int, error)
	SetReadDeadline(t time.Time) error
}

// trackReader adapts a pion TrackRemote (whose Read also returns interceptor attributes).
type trackReader struct{ t *webrtc.TrackRemote }

func (r trackReader) ReadRTPBytes(b []byte) (int, error) {
	n, _, err := r.t.Read(b)
	return n, err
}

func (r trackReader) SetReadDeadline(t time.Time) error { return r.t.SetReadDeadline(t) }

// plainSource feeds a track's packets to the recorder unchanged, except that frames the
// SFU injected are turned into padding (see serverFrame).
type plainSource struct {
	r     rtpReader
	codec media.Codec
	sif   []byte
}

func (s plainSource) ReadPacket(b []byte) (int, error) {
	n, err := s.r.ReadRTPBytes(b)
	if err != nil {
		return n, err
	}
	return stripServerFrame(b[:n], s.codec, s.sif), nil
}

func (s plainSource) SetReadDeadline(t time.Time) error { return s.r.SetReadDeadline(t) }

// ReleaseHeld: a plain source holds nothing back.
func (s plainSource) ReleaseHeld() bool { return false }

// LiveKit's SFU sends blank frames of its own to a subscriber when a publisher mutes or
// unpublishes (livekit-server pkg/sfu/downtrack.go: an 8x8 VP8 key frame, a 2x2 H.264 IDR
// with its parameter sets in one STAP-A, Opus silence), with the room's SIF trailer
// appended when the track is end-to-end encrypted. They are not the participant's media:
// an 8x8 picture in the middle of a 320x240 file breaks players.
var (
	blankVP8 = []byte{
		0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x08, 0x00, 0x08, 0x00, 0x00, 0x47, 0x08, 0x85, 0x85, 0x88,
		0x85, 0x84, 0x88, 0x02, 0x02, 0x00, 0x0c, 0x0d, 0x60, 0x00, 0xfe, 0xff, 0xab, 0x50, 0x80,
	}
	blankH264 = []byte{
		0x18, // STAP-A: SPS, PPS, IDR of a 2x2 picture
		0x00, 0x18, 0x67, 0x42, 0xc0, 0x1f, 0x0f, 0xd9, 0x1f, 0x88, 0x88, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00,
		0x00, 0x03, 0x00, 0xc8, 0x3c, 0x60, 0xc9, 0x20,
		0x00, 0x06, 0x68, 0x87, 0xcb, 0x83, 0xcb, 0x20,
		0x00, 0x0a, 0x65, 0x88, 0x84, 0x0a, 0xf2, 0x62, 0x80, 0x00, 0xa7, 0xbe,
	}
)

// vp8MaxDescriptor is the longest VP8 payload descriptor (RFC 7741 §4.2).
const vp8MaxDescriptor = 6

// serverFrame reports whether an RTP payload is a frame the SFU injected: it ends with the
// SIF trailer, or it is one of LiveKit's blank video frames.
func serverFrame(payload []byte, codec media.Codec, sif []byte) bool {
	if len(payload) == 0 {
		return false
	}
	if framecrypt.IsServerInjected(payload, sif) {
		return true
	}
	switch codec {
	case media.CodecVP8:
		return bytes.HasSuffix(payload, blankVP8) && len(payload)-len(blankVP8) <= vp8MaxDescriptor
	case media.CodecH264:
		return bytes.Equal(payload, blankH264)
	}
	return false
}

// stripServerFrame turns a packet carrying a server-injected frame into a padding packet:
// same sequence number and timestamp, no payload. The recorder then sees no gap in the
// sequence (nothing counts as lost) and writes no frame.
func stripServerFrame(p []byte, codec media.Codec, sif []byte) int {
	payload, _, ok := rtpPayload(p)
	if !ok || !serverFrame(payload, codec, sif) {
		return len(p)
	}
	hdr := len(p) - len(payload)
	if p[0]&0x20 != 0 {
		hdr -= int(p[len(p)-1])
		p[0] &^= 0x20
	}
	return hdr
}

// keyedSource feeds an encrypted track's packets to the recorder, holding back the frames
// whose key has not arrived yet (keys come over Matrix, media over the SFU: the first
// frames of a participant, and the first frames under a rotated key, can be faster than
// their key). Held packets are released in order as soon as the key is there, or after
// wait, when they are passed on anyway (and counted as undecryptable if they stay so).
// Frames under a key that failed to decrypt one (the track's keyGate says so) wait for a new
// key like frames with no key at all. It is used by the track's recording goroutine only.
type keyedSource struct {
	r       rtpReader
	gate    *keyGate
	codec   media.Codec
	video   bool
	sif     []byte
	wait    time.Duration
	maxHeld int
	log     zerolog.Logger
	now     func() time.Time
	// onGiveUp is called (on the reading goroutine) when a key did not arrive in time.
	onGiveUp func()
	// lenient: the track may be unencrypted; only frames whose trailer looks like the
	// encryption trailer wait for a key.
	lenient bool

	buf     []byte
	pending [][]byte // the frame in progress and the frames held behind a missing key
	ready   [][]byte // released, in order
	free    [][]byte
	eof     error

	holdSince time.Time
	holdIndex uint8
	gaveUp    bool
	gaveUpAt  uint64 // keyring version when waiting was given up

	// The video frame in progress: its RTP timestamp and where its packets start in pending.
	frameOpen  bool
	frameTS    uint32
	frameStart int

	// order puts a video track's packets back in sequence order before frames are cut
	// from them: a packet the SFU retransmits after a NACK arrives after packets of the
	// next frame, and taken in arrival order it would cut both frames off.
	order seqOrder

	// Counters for the log.
	heldFrames, waits, giveUps, truncated uint64
}

// newKeyedSource holds frames until their key is in gate (nil: a video track in the clear,
// which is only put in order and cut into frames).
func newKeyedSource(r rtpReader, gate *keyGate, c *codec.Spec, sif []byte, wait time.Duration, log zerolog.Logger) *keyedSource {
	video := c.IsVideo()
	maxHeld := 400 // audio: 8 s of 20 ms packets
	if video {
		maxHeld = 4000
	}
	return &keyedSource{
		r: r, gate: gate, codec: c.ID, video: video, sif: bytes.Clone(sif), wait: wait, maxHeld: maxHeld, log: log,
		now: time.Now, buf: make([]byte, 1600),
	}
}

func (s *keyedSource) SetReadDeadline(t time.Time) error { return s.r.SetReadDeadline(t) }

// ReadPacket returns the next released packet, reading (and possibly holding) packets from
// the track until one is released or the read fails.
func (s *keyedSource) ReadPacket(b []byte) (int, error) {
	for {
		if len(s.ready) > 0 {
			p := s.ready[0]
			s.ready[0] = nil
			s.ready = s.ready[1:]
			n := copy(b, p)
			s.free = append(s.free, p[:0])
			return n, nil
		}
		if s.eof != nil {
			return 0, s.eof
		}
		n, err := s.r.ReadRTPBytes(s.buf)
		now := s.now()
		if err != nil {
			if errors.Is(err, io.EOF) || !isTimeoutErr(err) {
				// The track ended: what is held goes to the recorder before the end.
				s.order.flush(func(p []byte) { s.frame(p, now) })
				s.release("track ended")
				if len(s.ready) > 0 {
					s.eof = err
					continue
				}
				return 0, err
			}
			s.order.expire(now, func(p []byte) { s.frame(p, now) })
			s.checkExpiry(now)
			if len(s.ready) > 0 {
				continue
			}
			return 0, err
		}
		s.push(s.buf[:n], now)
	}
}

func (s *keyedSource) copyPacket(p []byte) []byte {
	var c []byte
	if k := len(s.free); k > 0 {
		c = s.free[k-1]
		s.free = s.free[:k-1]
	}
	return append(c, p...)
}

func (s *keyedSource) push(p []byte, now time.Time) {
	p = p[:stripServerFrame(p, s.codec, s.sif)]
	pkt := s.copyPacket(p)
	if !s.video {
		s.frame(pkt, now)
		return
	}
	s.order.add(pkt, now, func(p []byte) { s.frame(p, now) })
}

// frame cuts frames from the packets, in order, and holds those whose key is missing.
func (s *keyedSource) frame(pkt []byte, now time.Time) {
	payload, marker, ok := rtpPayload(pkt)
	if ok && s.video && len(payload) > 0 {
		ts := binary.BigEndian.Uint32(pkt[4:8])
		if s.frameOpen && ts != s.frameTS {
			// The frame in progress ended without its marker packet: the SFU switched
			// simulcast layers (or streams) in the middle of it. Its packets become padding,
			// so no partial frame reaches the file and no packet counts as lost.
			s.truncate()
		}
		if !s.frameOpen {
			s.frameOpen, s.frameTS, s.frameStart = true, ts, len(s.pending)
		}
	}
	if !ok || (len(payload) == 0 && len(s.pending) == 0) {
		// Not RTP (the recorder counts it) or padding between frames: nothing to wait for.
		s.ready = append(s.ready, pkt)
		return
	}
	s.pending = append(s.pending, pkt)
	frameEnd := len(payload) > 0 && (!s.video || marker)
	if !frameEnd {
		if len(s.pending) > s.maxHeld {
			s.release("frame without an end")
		}
		s.checkExpiry(now)
		return
	}
	s.frameOpen = false
	if s.gate == nil {
		s.release("")
		return
	}
	index := payload[len(payload)-1]
	plainLooking := s.lenient && (len(payload) < 2 || payload[len(payload)-2] != framecrypt.IVLength)
	if plainLooking || s.keyUsable(index) || s.waitingGivenUp() {
		if !s.holdSince.IsZero() {
			s.log.Info().Uint8("key_index", s.holdIndex).Dur("held", now.Sub(s.holdSince)).Int("packets", len(s.pending)).Msg("Key arrived; releasing held frames")
		}
		s.release("")
		return
	}
	s.heldFrames++
	if s.holdSince.IsZero() {
		s.holdSince, s.holdIndex = now, index
		s.waits++
		s.log.Info().Uint8("key_index", index).Msg("Holding frames until their media key arrives")
	}
	if len(s.pending) > s.maxHeld {
		s.giveUp("too many packets held")
		return
	}
	s.checkExpiry(now)
}

// truncate turns the packets of the open (unfinished) frame into padding packets.
func (s *keyedSource) truncate() {
	for i := s.frameStart; i < len(s.pending); i++ {
		pkt := s.pending[i]
		if payload, _, ok := rtpPayload(pkt); ok && len(payload) > 0 {
			hdr := len(pkt) - len(payload)
			if pkt[0]&0x20 != 0 {
				hdr -= int(pkt[len(pkt)-1])
				pkt[0] &^= 0x20
			}
			s.pending[i] = pkt[:hdr]
		}
	}
	s.frameOpen = false
	s.truncated++
	if s.truncated <= 3 {
		s.log.Debug().Msg("Frame cut off by the SFU (no marker packet); dropped")
	}
}

// keyUsable reports whether frames under index can be decrypted now.
func (s *keyedSource) keyUsable(index uint8) bool {
	return s.gate == nil || s.gate.usable(index)
}

// waitingGivenUp reports whether the source stopped waiting and no key arrived since.
func (s *keyedSource) waitingGivenUp() bool {
	if !s.gaveUp || s.gate == nil {
		return false
	}
	if s.gate.ring.Version() != s.gaveUpAt {
		s.gaveUp = false
		return false
	}
	return true
}

func (s *keyedSource) checkExpiry(now time.Time) {
	if !s.holdSince.IsZero() && now.Sub(s.holdSince) >= s.wait {
		s.giveUp("no key within " + s.wait.String())
	}
}

// giveUp releases everything held and stops waiting until a key arrives.
func (s *keyedSource) giveUp(why string) {
	s.giveUps++
	s.log.Warn().Uint8("key_index", s.holdIndex).Int("packets", len(s.pending)).Str("reason", why).
		Msg("Media key did not arrive in time; passing frames on (they count as undecryptable)")
	s.gaveUp = true
	if s.gate != nil {
		s.gaveUpAt = s.gate.ring.Version()
	}
	s.release("")
	if s.onGiveUp != nil {
		s.onGiveUp()
	}
}

// ReleaseHeld passes on what is held when the track stops (recorder.TrackSource): those
// frames are then written if a key fits after all, or counted as undecryptable.
func (s *keyedSource) ReleaseHeld() bool {
	s.order.flush(func(p []byte) { s.frame(p, s.now()) })
	if len(s.pending) > 0 {
		s.log.Info().Int("packets", len(s.pending)).Msg("Track stopping with frames still waiting for their key")
	}
	s.release("stopping")
	return true
}

func (s *keyedSource) release(string) {
	s.ready = append(s.ready, s.pending...)
	clear(s.pending)
	s.pending = s.pending[:0]
	// A frame still open continues in pending from its next packet.
	s.frameStart = 0
	s.holdSince = time.Time{}
}

// Reordering of a video track's packets before frames are cut from them.
const (
	// reorderWait is how long packets after a gap wait for the missing one (a NACK and
	// its retransmission take a round trip) before the gap counts as loss.
	reorderWait = 150 * time.Millisecond
	// reorderMax bounds the packets waiting behind a gap.
	reorderMax = 256
	// reorderRestart: a sequence number this far from the expected one starts over (a
	// new stream), rather than waiting.
	reorderRestart = 1000
)

// seqOrder hands packets on in RTP sequence order: a packet that comes early waits for
// the ones before it, up to reorderWait (then they count as lost) or reorderMax packets; a
// packet older than what was handed on already is dropped (a duplicate, or one given up
// for lost, which the recorder would take as late anyway). The zero value is ready.
type seqOrder struct {
	started bool
	next    uint16
	early   []orderedPkt // sorted by sequence number
	since   time.Time    // when the gap before early[0] began
}

type orderedPkt struct {
	seq uint16
	pkt []byte
}

// add takes one packet (owned from then on) and passes on what is in order.
func (o *seqOrder) add(pkt []byte, now time.Time, out func([]byte)) {
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		out(pkt) // not RTP: the recorder counts it
		return
	}
	seq := binary.BigEndian.Uint16(pkt[2:4])
	if !o.started {
		o.started, o.next = true, seq
	}
	o.expire(now, out)
	d := int16(seq - o.next)
	switch {
	case d > reorderRestart || d < -reorderRestart:
		o.flush(out)
		o.next = seq
		fallthrough
	case d == 0:
		out(pkt)
		o.next = seq + 1
		o.drain(out)
	case d < 0:
		// Handed on (or given up) already.
	default:
		i, found := slices.BinarySearchFunc(o.early, seq, func(e orderedPkt, s uint16) int { return int(int16(e.seq - s)) })
		if found {
			return
		}
		if len(o.early) == 0 || o.since.IsZero() {
			o.since = now
		}
		o.early = slices.Insert(o.early, i, orderedPkt{seq: seq, pkt: pkt})
		if len(o.early) > reorderMax {
			o.skip(out)
		}
	}
}

// drain passes on the early packets that are next in order.
func (o *seqOrder) drain(out func([]byte)) {
	for len(o.early) > 0 && o.early[0].seq == o.next {
		out(o.early[0].pkt)
		o.early[0] = orderedPkt{}
		o.early = o.early[1:]
		o.next++
	}
	if len(o.early) == 0 {
		o.early = nil
	}
}

// skip gives up the gap before the first early packet.
func (o *seqOrder) skip(out func([]byte)) {
	if len(o.early) == 0 {
		return
	}
	o.next = o.early[0].seq
	o.drain(out)
	o.since = time.Time{}
}

// expire gives up gaps that waited reorderWait.
func (o *seqOrder) expire(now time.Time, out func([]byte)) {
	switch {
	case len(o.early) == 0:
	case o.since.IsZero():
		o.since = now // the gap left after a skip waits from now
	case now.Sub(o.since) >= reorderWait:
		o.skip(out)
		if len(o.early) > 0 {
			o.since = now
		}
	}
}

// flush passes on everything, in order.
func (o *seqOrder) flush(out func([]byte)) {
	for len(o.early) > 0 {
		o.skip(out)
	}
}

// rtpPayload returns an RTP packet's payload (without padding) and marker bit.
func rtpPayload(p []byte) (payload []byte, marker bool, ok bool) {
	if len(p) < 12 || p[0]>>6 != 2 {
		return nil, false, false
	}
	cc := int(p[0] & 0x0f)
	hdr := 12 + 4*cc
	if p[0]&0x10 != 0 {
		if len(p) < hdr+4 {
			return nil, false, false
		}
		hdr += 4 + 4*int(binary.BigEndian.Uint16(p[hdr+2:]))
	}
	end := len(p)
	if p[0]&0x20 != 0 {
		if end == 0 {
			return nil, false, false
		}
		end -= int(p[end-1])
	}
	if hdr > end {
		return nil, false, false
	}
	return p[hdr:end], p[1]&0x80 != 0, true
}

func isTimeoutErr(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

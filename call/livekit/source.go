package livekit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/call/livekit/framecrypt"
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

// plainSource feeds a track's packets to the recorder unchanged.
type plainSource struct{ r rtpReader }

func (s plainSource) ReadPacket(b []byte) (int, error)  { return s.r.ReadRTPBytes(b) }
func (s plainSource) SetReadDeadline(t time.Time) error { return s.r.SetReadDeadline(t) }

// keyedSource feeds an encrypted track's packets to the recorder, holding back the frames
// whose key has not arrived yet (keys come over Matrix, media over the SFU: the first
// frames of a participant, and the first frames under a rotated key, can be faster than
// their key). Held packets are released in order as soon as the key is there, or after
// wait, when they are passed on anyway (and counted as undecryptable if they stay so).
// It is used by the track's recording goroutine only; decryptFailed is called from the
// same goroutine, through the track's Transform.
type keyedSource struct {
	r       rtpReader
	ring    *framecrypt.Keyring
	video   bool
	sif     []byte
	wait    time.Duration
	maxHeld int
	log     zerolog.Logger
	now     func() time.Time
	// onGiveUp is called (on the reading goroutine) when a key did not arrive in time.
	onGiveUp func()

	buf     []byte
	pending [][]byte // the frame in progress and the frames held behind a missing key
	ready   [][]byte // released, in order
	free    [][]byte
	eof     error

	holdSince time.Time
	holdIndex uint8
	gaveUp    bool
	gaveUpAt  uint64 // keyring version when waiting was given up
	// bad remembers, per key index, the key generation that failed to decrypt a frame: such
	// frames wait for a new key at that index like frames with no key at all.
	bad map[uint8]uint64

	// Counters for the log.
	heldFrames, waits, giveUps uint64
}

func newKeyedSource(r rtpReader, ring *framecrypt.Keyring, video bool, sif []byte, wait time.Duration, log zerolog.Logger) *keyedSource {
	maxHeld := 400 // audio: 8 s of 20 ms packets
	if video {
		maxHeld = 4000
	}
	return &keyedSource{
		r: r, ring: ring, video: video, sif: bytes.Clone(sif), wait: wait, maxHeld: maxHeld, log: log,
		now: time.Now, buf: make([]byte, 1600), bad: map[uint8]uint64{},
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
				s.release("track ended")
				if len(s.ready) > 0 {
					s.eof = err
					continue
				}
				return 0, err
			}
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
	payload, marker, ok := rtpPayload(p)
	pkt := s.copyPacket(p)
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
	index := payload[len(payload)-1]
	if framecrypt.IsServerInjected(payload, s.sif) || s.keyUsable(index) || s.waitingGivenUp() {
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

// keyUsable reports whether frames under index can be decrypted now.
func (s *keyedSource) keyUsable(index uint8) bool {
	if !s.ring.Has(index) {
		return false
	}
	g, failed := s.bad[index]
	return !failed || g != s.ring.Generation(index)
}

// waitingGivenUp reports whether the source stopped waiting and no key arrived since.
func (s *keyedSource) waitingGivenUp() bool {
	if !s.gaveUp {
		return false
	}
	if s.ring.Version() != s.gaveUpAt {
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
	s.gaveUp, s.gaveUpAt = true, s.ring.Version()
	s.release("")
	if s.onGiveUp != nil {
		s.onGiveUp()
	}
}

func (s *keyedSource) release(string) {
	s.ready = append(s.ready, s.pending...)
	clear(s.pending)
	s.pending = s.pending[:0]
	s.holdSince = time.Time{}
}

// decryptFailed learns from a frame the recorder could not decrypt: its key index waits for
// a new key from now on.
func (s *keyedSource) decryptFailed(frame []byte, err error) {
	index, ok := framecrypt.KeyIndex(frame)
	if !ok {
		return
	}
	switch {
	case errors.Is(err, framecrypt.ErrAuthentication):
		s.bad[index] = s.ring.Generation(index)
	case errors.Is(err, framecrypt.ErrMissingKey):
		s.bad[index] = 0
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

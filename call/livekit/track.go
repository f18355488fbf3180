package livekit

import (
	"errors"
	"time"

	"github.com/pion/rtcp"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/call/livekit/framecrypt"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
)

// trackSource is a track subscribed on the SFU as the recorder reads it
// (recorder.TrackSource): its packets come through a stage that turns the frames the SFU
// injected into padding (plainSource), or that also puts video back in sequence order,
// cuts it into frames and holds the frames whose key has not come (keyedSource); its
// sender reports come from the SDK's RTCP call-back (rtcp); key frame requests go to the
// publisher as PLIs.
type trackSource struct {
	recorder.SenderReportRelay
	packetStage
	ssrc uint32
	pli  func()
}

// packetStage is where a trackSource reads its packets.
type packetStage interface {
	recorder.PacketSource
	ReleaseHeld() bool
}

var _ recorder.TrackSource = (*trackSource)(nil)

// trackOptions describe a subscribed track for newTrackSource.
type trackOptions struct {
	// sif is the room's server-injected-frame trailer (may be empty).
	sif []byte
	// ring holds the sender's media keys when the track is encrypted, or may be (maybe:
	// an encrypted room's track published as unencrypted); nil for a track in the clear.
	ring  *framecrypt.Keyring
	maybe bool
	// wait bounds how long frames wait for their key.
	wait time.Duration
	// pli asks the publisher for a key frame; noKey is told (on the track's goroutine) that
	// a key did not come in time; undecryptable counts a frame that did not decrypt.
	pli           func()
	noKey         func()
	undecryptable func()
	log           zerolog.Logger
}

// newTrackSource adapts a subscribed track of codec c read from r for the recorder, and
// returns the decrypter its frames go through when it is encrypted (nil otherwise). An
// encrypted track in a codec without an encryption format is an error; one that only may
// be encrypted is then recorded as it is.
func newTrackSource(r rtpReader, ssrc uint32, c *codec.Spec, o trackOptions) (*trackSource, *frameDecrypter, error) {
	s := &trackSource{ssrc: ssrc, pli: o.pli}
	s.packetStage = plainSource{r: r, codec: c.ID, sif: o.sif}
	if c.IsVideo() {
		// Video goes through the frame-aware stage even in the clear: it drops frames the
		// SFU cut off when switching simulcast layers.
		s.packetStage = newKeyedSource(r, nil, c, o.sif, o.wait, o.log)
	}
	if o.ring == nil {
		return s, nil, nil
	}
	dec, err := framecrypt.NewDecryptor(c.ID, o.ring, o.sif)
	if err != nil {
		if o.maybe {
			return s, nil, nil
		}
		return nil, nil, err
	}
	gate := &keyGate{ring: o.ring, bad: map[uint8]uint64{}}
	ks := newKeyedSource(r, gate, c, o.sif, o.wait, o.log)
	ks.lenient = o.maybe
	ks.onGiveUp = o.noKey
	s.packetStage = ks
	return s, &frameDecrypter{dec: dec, gate: gate, maybe: o.maybe, undecryptable: o.undecryptable, log: o.log}, nil
}

// RequestKeyframe implements recorder.TrackSource.
func (s *trackSource) RequestKeyframe() { s.pli() }

// rtcp takes the RTCP the SDK reads for the track (RemoteTrackPublication.OnRTCP).
func (s *trackSource) rtcp(p rtcp.Packet) {
	if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC == s.ssrc {
		s.Deliver(recorder.SenderReport{NTPTime: sr.NTPTime, RTPTime: sr.RTPTime, Arrival: time.Now()})
	}
}

// keyGate is what a track knows of its sender's keys beyond the keyring: for each key
// index, the key generation that failed to decrypt a frame. The track's decrypter marks
// such failures as it decrypts, and its keyed source asks before it releases held frames,
// both on the track's goroutine: frames under a key that failed wait for a new key at
// that index like frames with no key at all.
type keyGate struct {
	ring *framecrypt.Keyring
	bad  map[uint8]uint64
}

// usable reports whether frames under index can be decrypted now.
func (g *keyGate) usable(index uint8) bool {
	if !g.ring.Has(index) {
		return false
	}
	gen, failed := g.bad[index]
	return !failed || gen != g.ring.Generation(index)
}

// failed learns from a frame that could not be decrypted: its key index waits for a new key
// from now on.
func (g *keyGate) failed(frame []byte, err error) {
	index, ok := framecrypt.KeyIndex(frame)
	if !ok {
		return
	}
	switch {
	case errors.Is(err, framecrypt.ErrAuthentication):
		g.bad[index] = g.ring.Generation(index)
	case errors.Is(err, framecrypt.ErrMissingKey):
		g.bad[index] = 0
	}
}

// frameDecrypter is an encrypted track's recorder.FrameDecrypter: it decrypts every frame
// and marks the key of a frame that fails in the track's keyGate. maybe: the track was
// published as unencrypted, so its frames pass as they are until one decrypts.
type frameDecrypter struct {
	dec           *framecrypt.Decryptor
	gate          *keyGate
	maybe         bool
	undecryptable func()
	log           zerolog.Logger

	logged, decrypted uint64
}

// DecryptFrame implements recorder.FrameDecrypter.
func (d *frameDecrypter) DecryptFrame(dst, in []byte, keyframe bool) ([]byte, error) {
	out, err := d.dec.Decrypt(dst, in, keyframe)
	if err == nil {
		d.decrypted++
		if d.maybe && d.decrypted == 1 {
			d.log.Warn().Msg("Track published as unencrypted carries encrypted frames; decrypting them")
		}
		return out, nil
	}
	if d.maybe && d.decrypted == 0 && !errors.Is(err, framecrypt.ErrServerInjected) {
		// No frame of this track decrypted so far: it may really be in the clear.
		return append(dst[:0], in...), nil
	}
	d.gate.failed(in, err)
	if !errors.Is(err, framecrypt.ErrServerInjected) && d.undecryptable != nil {
		d.undecryptable()
	}
	if d.logged < 5 {
		d.logged++
		d.log.Debug().Err(err).Msg("Frame not decrypted")
	}
	return nil, err
}

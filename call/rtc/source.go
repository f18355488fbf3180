package rtc

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Source is a pion remote track as the recorder reads it (recorder.TrackSource): its
// packets, read straight into the recorder's buffer; the sender reports of its SSRC, from
// one reader of its receiver's RTCP for the track's whole life (however often its
// recording restarts); and key frame requests, sent as PLIs on its peer connection. 1:1
// calls and full mesh record their tracks through it.
type Source struct {
	recorder.SenderReportRelay
	track *webrtc.TrackRemote
	pc    *webrtc.PeerConnection
	log   zerolog.Logger
}

var _ recorder.TrackSource = (*Source)(nil)

// NewSource adapts a remote track of pc, received by r, and starts reading r's RTCP. The
// reader ends when the receiver stops (its peer connection closes or renegotiation drops
// the track).
func NewSource(pc *webrtc.PeerConnection, t *webrtc.TrackRemote, r *webrtc.RTPReceiver, log zerolog.Logger) *Source {
	s := &Source{track: t, pc: pc, log: log}
	if r != nil {
		go s.readSenderReports(r, uint32(t.SSRC()))
	}
	return s
}

// Info describes the track's media for the recorder; the caller adds whose it is (user,
// device, purpose) and its clock domain.
func (s *Source) Info() recorder.TrackInfo { return TrackInfo(s.track) }

// TrackInfo describes a pion remote track's media for the recorder: codec, payload type
// and SSRC.
func TrackInfo(t *webrtc.TrackRemote) recorder.TrackInfo {
	c := t.Codec()
	return recorder.TrackInfo{
		MimeType: c.MimeType, ClockRate: c.ClockRate, Channels: c.Channels, Fmtp: c.SDPFmtpLine,
		PayloadType: uint8(t.PayloadType()), SSRC: uint32(t.SSRC()),
	}
}

// ReadPacket implements recorder.TrackSource.
func (s *Source) ReadPacket(b []byte) (int, error) {
	n, _, err := s.track.Read(b)
	return n, err
}

// SetReadDeadline implements recorder.TrackSource.
func (s *Source) SetReadDeadline(t time.Time) error { return s.track.SetReadDeadline(t) }

// RequestKeyframe sends a PLI for the track.
func (s *Source) RequestKeyframe() {
	if err := s.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(s.track.SSRC())}}); err != nil {
		s.log.Debug().Err(err).Msg("Failed to send PLI")
	}
}

// ReleaseHeld implements recorder.TrackSource: a pion track holds nothing back.
func (s *Source) ReleaseHeld() bool { return false }

// Drain reads and discards the track until it ends (see Drain).
func (s *Source) Drain() int { return Drain(s.track) }

// readSenderReports forwards the sender reports for ssrc until the receiver stops. Reading
// RTCP also keeps pion's interceptors (receiver reports, NACK) fed.
func (s *Source) readSenderReports(r *webrtc.RTPReceiver, ssrc uint32) {
	for {
		pkts, _, err := r.ReadRTCP()
		if err != nil {
			return
		}
		now := time.Now()
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC == ssrc {
				s.Deliver(recorder.SenderReport{NTPTime: sr.NTPTime, RTPTime: sr.RTPTime, Arrival: now})
			}
		}
	}
}

// maxDrainErrors ends Drain when a track only fails (every read an error, no packet).
const maxDrainErrors = 1000

// Drain reads and discards what a remote track sends until it ends (its peer connection
// closes or the sender stops it), and returns the packets it read. A track that is not
// recorded (refused: over a limit, opted out, a codec the recorder cannot write; or no
// longer: its recording ended while the call goes on) must still be read, or pion keeps
// its packets buffered for nothing and its interceptors (receiver reports, NACK) starve.
// Read errors that do not end the track (a payload type pion does not know) are skipped.
func Drain(t *webrtc.TrackRemote) int {
	_ = t.SetReadDeadline(time.Time{})
	buf := make([]byte, 1600)
	n := 0
	for failures := 0; failures < maxDrainErrors; {
		_, _, err := t.Read(buf)
		switch {
		case err == nil:
			n++
			failures = 0
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed):
			return n
		default:
			failures++
		}
	}
	return n
}

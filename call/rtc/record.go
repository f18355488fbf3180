package rtc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// remoteSource adapts a pion remote track to the recorder's packet source.
type remoteSource struct{ t *webrtc.TrackRemote }

func (s remoteSource) ReadPacket(b []byte) (int, error) {
	n, _, err := s.t.Read(b)
	return n, err
}

func (s remoteSource) SetReadDeadline(t time.Time) error { return s.t.SetReadDeadline(t) }

// Record records one remote track into sess until the track ends or the session closes.
// RTCP sender reports read from the receiver place the track on the call's timeline;
// keyframe is called (rate-limited by the recorder) when video needs a keyframe.
func Record(ctx context.Context, sess *recorder.Session, info recorder.TrackInfo, t *webrtc.TrackRemote, r *webrtc.RTPReceiver, keyframe func(), log zerolog.Logger) error {
	tr, err := sess.AddTrack(info)
	if err != nil {
		return fmt.Errorf("add track: %w", err)
	}
	if r != nil {
		go readSenderReports(r, tr, info.SSRC)
	}
	return tr.Run(ctx, remoteSource{t}, keyframe)
}

// readSenderReports forwards the sender reports for ssrc until the receiver stops. Reading
// RTCP also keeps pion's interceptors (receiver reports, NACK) fed.
func readSenderReports(r *webrtc.RTPReceiver, tr *recorder.Track, ssrc uint32) {
	for {
		pkts, _, err := r.ReadRTCP()
		if err != nil {
			return
		}
		now := time.Now()
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC == ssrc {
				tr.SenderReport(sr.NTPTime, sr.RTPTime, now)
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

package recorder

import (
	"sync"
	"time"
)

// PacketSource is where a track's RTP packets come from.
type PacketSource interface {
	// ReadPacket reads one RTP packet into b, a buffer the recorder reuses, and returns its
	// length. It returns an error whose Timeout() is true when the read deadline passes, and
	// io.EOF (or net.ErrClosed, io.ErrClosedPipe) when the track has ended; other errors (a
	// payload type pion does not know) are counted and the track reads on.
	ReadPacket(b []byte) (int, error)
	// SetReadDeadline bounds ReadPacket. The recorder also calls it from another goroutine
	// to wake a blocked read when the track stops.
	SetReadDeadline(t time.Time) error
}

// TrackSource is the one way media enters the recorder: an incoming track as Track.Run
// reads it. It gives the track's packets, the RTCP sender reports of its sender (which
// place it on the call's timeline), a way to ask the sender for a key frame, and its end.
// Each call backend adapts its tracks to it: call/rtc for pion's remote tracks (1:1 calls
// and full mesh), call/livekit for tracks subscribed on a LiveKit SFU.
//
// Run reads a source on one goroutine and processes each packet on that goroutine as it
// is read, in the recorder's own buffer: a source adds no copy and no hand-off of its own
// unless it must hold packets back. A source may be read by several Runs one after the
// other (a track that goes on in new parts after its owner opted out and back in); its
// sender reports keep coming from one reader for its whole life.
type TrackSource interface {
	PacketSource
	// SenderReports delivers the sender reports of the track to fn, from any goroutine,
	// until the returned function is called.
	SenderReports(fn func(SenderReport)) (stop func())
	// RequestKeyframe asks the sender for a key frame (an RTCP PLI). The recorder limits
	// how often it asks.
	RequestKeyframe()
	// ReleaseHeld is called when the recording of the track stops before the track ends:
	// packets the source holds back (an encrypted track waiting for its key) are to come
	// from the next reads instead of being lost unseen. It reports whether the source may
	// hold packets at all; then the recorder reads what it has left before it finishes.
	ReleaseHeld() bool
}

// SenderReport is one RTCP sender report of a track's sender (RFC 3550 §6.4.1): the
// sender's wall clock and the RTP timestamp of the same instant.
type SenderReport struct {
	// NTPTime is the sender's clock in the RTCP 64-bit NTP format.
	NTPTime uint64
	RTPTime uint32
	// Arrival is when the report arrived.
	Arrival time.Time
}

// SenderReportRelay implements TrackSource.SenderReports for a source that reads its
// track's RTCP itself: the source's one RTCP reader calls Deliver, and the relay hands
// each report to the recording reading the source, if any. The latest report is kept and
// handed to a recording as it starts, so that a track going on in a new part is placed
// by its sender's clock at once. The zero value is ready.
type SenderReportRelay struct {
	mu   sync.Mutex
	to   func(SenderReport)
	gen  uint64
	last SenderReport
	have bool
}

// Deliver passes on one sender report.
func (r *SenderReportRelay) Deliver(sr SenderReport) {
	r.mu.Lock()
	r.last, r.have = sr, true
	to := r.to
	r.mu.Unlock()
	if to != nil {
		to(sr)
	}
}

// SenderReports implements TrackSource.
func (r *SenderReportRelay) SenderReports(fn func(SenderReport)) (stop func()) {
	r.mu.Lock()
	r.to = fn
	r.gen++
	gen := r.gen
	last, have := r.last, r.have
	r.mu.Unlock()
	if have {
		fn(last)
	}
	return func() {
		r.mu.Lock()
		if r.gen == gen {
			r.to = nil
		}
		r.mu.Unlock()
	}
}

// Packets makes a TrackSource of a PacketSource that has nothing else to give: no sender
// reports, no way to ask for a key frame, nothing held back (an RTP stream from a UDP
// socket, a file, a test).
func Packets(src PacketSource) TrackSource { return packetsOnly{src} }

type packetsOnly struct{ PacketSource }

func (packetsOnly) SenderReports(func(SenderReport)) func() { return func() {} }
func (packetsOnly) RequestKeyframe()                        {}
func (packetsOnly) ReleaseHeld() bool                       { return false }

// FrameDecrypter decrypts the frames of an end-to-end encrypted track (MatrixRTC media
// encryption). The pipeline passes every complete frame through it, on the track's
// goroutine, before placing the frame on the timeline; it is given to Track.Run with
// WithDecrypter.
type FrameDecrypter interface {
	// DecryptFrame appends the plain frame to dst[:0] and returns it. keyframe is the frame
	// type the depacketizer found. An error drops the frame, which counts as undecryptable.
	// It must not keep frame or dst after it returns.
	DecryptFrame(dst, frame []byte, keyframe bool) ([]byte, error)
}

// RunOption configures Track.Run.
type RunOption func(*runConfig)

type runConfig struct {
	dec FrameDecrypter
}

// WithDecrypter decrypts every frame of the track with d. Frames are then opaque to the
// depacketizer, which judges key frames by the RTP payload descriptor alone.
func WithDecrypter(d FrameDecrypter) RunOption {
	return func(c *runConfig) { c.dec = d }
}

package testmedia

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/matrix-recorder/matrix-recorder/ctxtime"
)

// SampleWriter is what a Sender writes to; *webrtc.TrackLocalStaticSample
// implements it.
type SampleWriter interface {
	WriteSample(media.Sample) error
}

// PauseMode says what a paused Sender puts on the wire.
type PauseMode int

// Pause modes. The zero value is PauseUnknown, which Pause treats as
// PauseSilent.
const (
	PauseUnknown PauseMode = iota
	// PauseSilent sends nothing; the RTP timestamps still advance with the
	// wall clock, as when a sender stops transmitting.
	PauseSilent
	// PauseDTX sends a one-byte Opus packet (a zero-length frame, decoded
	// as silence) every 400 ms, as Chrome does in discontinuous
	// transmission, and nothing in between. A video Sender (one whose
	// frames are not all keyframes) treats it as PauseSilent.
	PauseDTX
)

// String names the mode.
func (m PauseMode) String() string {
	switch m {
	case PauseSilent:
		return "silent"
	case PauseDTX:
		return "dtx"
	default:
		return "unknown"
	}
}

// dtxInterval is how often Chrome sends a comfort noise packet in DTX.
const dtxInterval = 400 * time.Millisecond

// Sender writes frames to a track in real time, looping over them, until its
// context ends. Pause and Resume create gaps, as a muted or silent caller does.
type Sender struct {
	w      SampleWriter
	frames []Frame
	video  bool
	clock  func() time.Time
	sleep  func(context.Context, time.Duration) error

	mu      sync.Mutex
	paused  PauseMode // PauseUnknown while running
	resumed bool      // set by Resume, cleared when the next frame goes out
	sent    int
	dtxSent int

	// jumpEvery and jumpBy: see WithTimestampJumps.
	jumpEvery int
	jumpBy    time.Duration
}

// SenderOption configures a Sender.
type SenderOption func(*Sender)

// WithClock replaces the wall clock and the sleep between frames (tests of
// the Sender itself use a fake clock).
func WithClock(now func() time.Time, sleep func(context.Context, time.Duration) error) SenderOption {
	return func(s *Sender) { s.clock, s.sleep = now, sleep }
}

// WithTimestampJumps makes the Sender's RTP timestamps jump forward by by after every
// every frames, while the frames still go out in real time: a broken or hostile sender
// whose timeline keeps jumping (each jump, confirmed by the frames after it, is a new
// timeline to a recorder).
func WithTimestampJumps(every int, by time.Duration) SenderOption {
	return func(s *Sender) { s.jumpEvery, s.jumpBy = every, by }
}

// NewSender returns a Sender of frames (from OpusFrames, VideoFrames or
// Frames) to w.
func NewSender(w SampleWriter, frames []Frame, opts ...SenderOption) *Sender {
	s := &Sender{w: w, frames: frames, clock: time.Now, sleep: ctxtime.Sleep}
	for _, o := range opts {
		o(s)
	}
	for _, f := range frames {
		if !f.Keyframe {
			s.video = true
		}
	}
	return s
}

// Pause stops sending media frames until Resume.
func (s *Sender) Pause(mode PauseMode) {
	if mode == PauseUnknown || (mode == PauseDTX && s.video) {
		mode = PauseSilent
	}
	s.mu.Lock()
	s.paused = mode
	s.mu.Unlock()
}

// Resume sends media again. Video resumes at the next keyframe of the loop,
// as an unmuted camera starts with one.
func (s *Sender) Resume() {
	s.mu.Lock()
	if s.paused != PauseUnknown {
		s.resumed = true
	}
	s.paused = PauseUnknown
	s.mu.Unlock()
}

// Sent returns how many media frames and DTX packets have been written.
func (s *Sender) Sent() (frames, dtx int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.dtxSent
}

// Run sends until ctx ends (returning nil) or a write fails. Every frame slot
// of the timeline is accounted for: a frame that is not sent (paused) still
// advances the track's RTP timestamp by its duration, so gaps on the wire
// have the length of the pause.
func (s *Sender) Run(ctx context.Context) error {
	if len(s.frames) == 0 {
		return errors.New("sender has no frames")
	}
	next := s.clock()
	var sinceDTX time.Duration
	for i := 0; ; {
		if err := s.sleep(ctx, next.Sub(s.clock())); err != nil {
			return nil // the context ended: a normal stop
		}
		f := s.frames[i]
		s.mu.Lock()
		mode, resumed := s.paused, s.resumed
		if resumed && mode == PauseUnknown && !f.Keyframe {
			// Skip ahead to a keyframe before sending video again.
			s.mu.Unlock()
			if err := s.w.WriteSample(media.Sample{Duration: f.Duration}); err != nil {
				return fmt.Errorf("advancing track clock: %w", err)
			}
			next = next.Add(f.Duration)
			i = (i + 1) % len(s.frames)
			continue
		}
		s.resumed = false
		s.mu.Unlock()

		sample := media.Sample{Duration: f.Duration}
		switch mode {
		case PauseUnknown:
			sample.Data = f.Data
			sinceDTX = 0
		case PauseDTX:
			sinceDTX += f.Duration
			if sinceDTX >= dtxInterval {
				sinceDTX = 0
				sample.Data = []byte{f.Data[0] & 0xfc} // TOC only, one empty frame
			}
		}
		// A sample without data advances the RTP timestamp without sending.
		if err := s.w.WriteSample(sample); err != nil {
			return fmt.Errorf("writing frame %d: %w", i, err)
		}
		s.mu.Lock()
		switch {
		case mode == PauseUnknown:
			s.sent++
		case len(sample.Data) > 0:
			s.dtxSent++
		}
		jump := s.jumpEvery > 0 && mode == PauseUnknown && s.sent%s.jumpEvery == 0
		s.mu.Unlock()
		if jump {
			if err := s.w.WriteSample(media.Sample{Duration: s.jumpBy}); err != nil {
				return fmt.Errorf("jumping the track clock: %w", err)
			}
		}
		next = next.Add(f.Duration)
		i = (i + 1) % len(s.frames)
	}
}

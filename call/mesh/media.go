package mesh

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
	rmedia "github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// silentSource is the bot's own audio: one Opus track of digital silence, shared by every
// peer connection of a recording, described as muted user media. matrix-js-sdk hangs up an
// incoming call whose offer has no stream with a track, so the bot's offers carry it.
type silentSource struct {
	track  *webrtc.TrackLocalStaticSample
	stream string
	frame  []byte
	log    zerolog.Logger

	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

const silenceFrame = 20 * time.Millisecond

func newSilentSource(log zerolog.Logger) *silentSource {
	s := &silentSource{stream: "recorder-" + randomID(8), log: log, done: make(chan struct{})}
	o, _ := codec.Of(rmedia.CodecOpus)
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{
		MimeType: o.MimeType, ClockRate: o.ClockRate, Channels: o.Channels, SDPFmtpLine: o.RTP[0].Fmtp,
	}, "recorder-audio-"+randomID(4), s.stream)
	if err != nil {
		log.Error().Err(err).Msg("Could not create the silent audio track")
	}
	s.track = track
	s.frame, _ = o.Audio.Silence(silenceFrame)
	return s
}

// metadata describes the silent stream in sdp_stream_metadata.
func (s *silentSource) metadata() voip.StreamMetadataMap {
	return voip.StreamMetadataMap{s.stream: {Purpose: voip.PurposeUserMedia, AudioMuted: true, VideoMuted: true}}
}

// start sends a silence frame every 20 ms until stop.
func (s *silentSource) start() {
	if s.track == nil {
		close(s.done)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		t := time.NewTicker(silenceFrame)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.track.WriteSample(media.Sample{Data: s.frame, Duration: silenceFrame}); err != nil {
					s.log.Trace().Err(err).Msg("Silence not sent")
				}
			}
		}
	}()
}

func (s *silentSource) stop() {
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
			<-s.done
		}
	})
}

// drainRTCP reads a sender's RTCP so pion's interceptors keep working.
func drainRTCP(s *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := s.Read(buf); err != nil {
			return
		}
	}
}

// onTrack starts recording a remote track at once, on pion's callback goroutine, so the
// first packets are not kept waiting behind signalling.
func (pe *peer) onTrack(pc *webrtc.PeerConnection, t *webrtc.TrackRemote, rcv *webrtc.RTPReceiver, purpose string, log zerolog.Logger) {
	src := rtc.NewSource(pc, t, rcv, log)
	p := &pump{r: pe.r, key: pe.key, src: src, info: src.Info(), log: log}
	p.info.UserID, p.info.DeviceID, p.info.DisplayName = string(pe.key.User), string(pe.key.Device), pe.name
	p.info.Purpose, p.info.ClockDomain = purpose, pe.callID
	if !pe.r.addPump(p) {
		go src.Drain()
		return
	}
	log.Info().Str("purpose", purpose).Msg("Recording track")
	go p.run()
}

// pump records one remote track into the session, in parts: while its owner has opted
// out, packets are read and dropped, never written. One source serves every part, so the
// track's sender reports have one reader throughout.
type pump struct {
	r    *Recording
	key  matrixrtc.DeviceKey
	src  *rtc.Source
	info recorder.TrackInfo
	log  zerolog.Logger

	mu      sync.Mutex
	cancel  context.CancelFunc
	consent bool // the current part was cut by an opt-out
}

func (r *Recording) addPump(p *pump) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return false
	}
	r.pumps[p] = struct{}{}
	return true
}

func (r *Recording) removePump(p *pump) {
	r.mu.Lock()
	delete(r.pumps, p)
	r.mu.Unlock()
}

// optOutPoll is how often a track of an opted-out user checks whether it may record again.
const optOutPoll = 250 * time.Millisecond

func (p *pump) run() {
	// Whatever ends the recording of the track (a refusal: the recorder's file limit, a
	// codec it cannot write; the recording's end), it is read until it ends.
	defer p.src.Drain()
	defer p.r.removePump(p)
	for p.r.ctx.Err() == nil {
		if p.r.optedOut(p.key.User) {
			if !p.drain() {
				return
			}
			continue
		}
		ctx, cancel := context.WithCancel(p.r.ctx)
		p.mu.Lock()
		p.cancel, p.consent = cancel, false
		p.mu.Unlock()
		p.r.trackCount(p.key, 1)
		err := p.record(ctx)
		p.r.trackCount(p.key, -1)
		p.mu.Lock()
		cut := p.consent
		p.cancel = nil
		p.mu.Unlock()
		cancel()
		if err != nil {
			if !errors.Is(err, recorder.ErrSessionClosed) {
				p.log.Warn().Err(err).Msg("Track recording ended with an error")
			}
			return
		}
		if !cut {
			return // the track or the recording ended
		}
		// Opted out: the part is finalised; read on without writing.
		_ = p.src.SetReadDeadline(time.Time{})
	}
}

// record writes the track into the session, in a new part, until ctx ends or the track does.
func (p *pump) record(ctx context.Context) error {
	tr, err := p.r.sess.AddTrack(p.info)
	if err != nil {
		return fmt.Errorf("add track: %w", err)
	}
	return tr.Run(ctx, p.src)
}

// consentChanged cuts the current part when the owner opts out; an opt-in is noticed by
// drain within optOutPoll.
func (p *pump) consentChanged(out bool) {
	if !out {
		return
	}
	p.mu.Lock()
	if p.cancel != nil {
		p.consent = true
		p.cancel()
	}
	p.mu.Unlock()
}

// drain discards packets while the owner is opted out. It returns false when the track or
// the recording ended.
func (p *pump) drain() bool {
	buf := make([]byte, 1600)
	defer func() { _ = p.src.SetReadDeadline(time.Time{}) }()
	for {
		if p.r.ctx.Err() != nil {
			return false
		}
		if !p.r.optedOut(p.key.User) {
			return true
		}
		_ = p.src.SetReadDeadline(time.Now().Add(optOutPoll))
		if _, err := p.src.ReadPacket(buf); err != nil {
			var te interface{ Timeout() bool }
			if errors.As(err, &te) && te.Timeout() {
				continue
			}
			return false
		}
	}
}

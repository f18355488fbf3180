package meshpeer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
)

// Media says what a participant sends.
type Media struct {
	// Audio and Video name testmedia assets; empty means none.
	Audio string
	Video string
	// Click sends digital silence, and this clip at each time given to Group.Click, on
	// the wall clock's 20 ms grid, instead of Audio.
	Click *Click
	// AudioOptions configure the sender of Audio (testmedia.WithTimestampJumps: a hostile
	// sender).
	AudioOptions []testmedia.SenderOption
}

// Click is a short Opus clip with a loud burst in it, made by a real encoder from
// silence, so a decoder that has just decoded silence plays the burst at full level.
type Click struct {
	// Frames are 20 ms Opus packets.
	Frames [][]byte
	// Offset is where the burst starts in the clip.
	Offset time.Duration
}

// ReadClick reads an Ogg Opus file of 20 ms packets, one per page (ffmpeg -page_duration
// 20000), as a Click whose burst starts at offset.
func ReadClick(path string, offset time.Duration) (*Click, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	frames, err := testmedia.ParseOgg(path, data)
	if err != nil {
		return nil, err
	}
	c := &Click{Offset: offset}
	for _, f := range frames {
		if f.Duration != clickSlot {
			return nil, fmt.Errorf("%s: want one 20 ms packet per page", path)
		}
		c.Frames = append(c.Frames, f.Data)
	}
	if time.Duration(len(c.Frames))*clickSlot <= offset {
		return nil, fmt.Errorf("%s: clip shorter than its offset", path)
	}
	return c, nil
}

// localTrack is one local track and what feeds it.
type localTrack struct {
	track   *webrtc.TrackLocalStaticSample
	stream  string
	purpose string // usermedia or screenshare
	kind    string // audio or video
	run     func(context.Context) error

	mu        sync.Mutex
	cancel    context.CancelFunc
	done      chan struct{}
	startedAt time.Time
}

func newLocalTrack(asset, stream, purpose string, opts ...testmedia.SenderOption) (*localTrack, error) {
	a, err := testmedia.Lookup(asset)
	if err != nil {
		return nil, err
	}
	frames, err := testmedia.Frames(asset)
	if err != nil {
		return nil, err
	}
	kind := "audio"
	if a.Video {
		kind = "video"
	}
	track, err := webrtc.NewTrackLocalStaticSample(a.Capability(), purpose+"-"+kind+"-"+randomID(4), stream)
	if err != nil {
		return nil, err
	}
	s := testmedia.NewSender(track, frames, opts...)
	return &localTrack{track: track, stream: stream, purpose: purpose, kind: kind, run: s.Run}, nil
}

func (lt *localTrack) start() {
	ctx, cancel := context.WithCancel(context.Background())
	lt.mu.Lock()
	lt.cancel, lt.done, lt.startedAt = cancel, make(chan struct{}), time.Now()
	done := lt.done
	lt.mu.Unlock()
	go func() {
		defer close(done)
		_ = lt.run(ctx)
	}()
}

// switchSource stops the current source and feeds the track from asset, keeping the RTP
// clock running through the switch in whole 20 ms frames, as a browser's audio encoder
// ticks on while the input device changes.
func (lt *localTrack) switchSource(asset string) error {
	frames, err := testmedia.Frames(asset)
	if err != nil {
		return err
	}
	lt.stop()
	stopped := time.Now()
	s := testmedia.NewSender(lt.track, frames)
	lt.run = func(ctx context.Context) error {
		// A sample without data advances the timestamp without sending anything.
		gap := (time.Since(stopped) + clickSlot - 1).Truncate(clickSlot)
		if err := lt.track.WriteSample(media.Sample{Duration: gap}); err != nil {
			return err
		}
		return s.Run(ctx)
	}
	lt.start()
	return nil
}

func (lt *localTrack) stop() {
	lt.mu.Lock()
	cancel, done := lt.cancel, lt.done
	lt.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// localMedia is the user media of one session (camera and microphone).
type localMedia struct {
	audio, video *localTrack
	clicker      *clicker
	startedAt    time.Time
}

func newLocalMedia(m Media) (*localMedia, error) {
	stream := "usermedia-" + randomID(6)
	lm := &localMedia{}
	switch {
	case m.Click != nil:
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "usermedia-audio-"+randomID(4), stream)
		if err != nil {
			return nil, err
		}
		ck, err := newClicker(track, m.Click)
		if err != nil {
			return nil, err
		}
		lm.clicker = ck
		lm.audio = &localTrack{track: track, stream: stream, purpose: "usermedia", kind: "audio", run: ck.run}
	case m.Audio != "":
		lt, err := newLocalTrack(m.Audio, stream, "usermedia", m.AudioOptions...)
		if err != nil {
			return nil, err
		}
		lm.audio = lt
	}
	if m.Video != "" {
		lt, err := newLocalTrack(m.Video, stream, "usermedia")
		if err != nil {
			return nil, err
		}
		lm.video = lt
	}
	if lm.audio == nil && lm.video == nil {
		return nil, errors.New("no media")
	}
	return lm, nil
}

func (lm *localMedia) tracks() []*localTrack {
	var out []*localTrack
	for _, lt := range []*localTrack{lm.audio, lm.video} {
		if lt != nil {
			out = append(out, lt)
		}
	}
	return out
}

func (lm *localMedia) start() {
	lm.startedAt = time.Now()
	for _, lt := range lm.tracks() {
		lt.start()
	}
}

func (lm *localMedia) stop() {
	for _, lt := range lm.tracks() {
		lt.stop()
	}
}

// clicker sends 20 ms Opus frames of digital silence on the wall clock's 20 ms grid, and
// plays the click clip so that its burst starts in the slot of each click time.
// Participants on one machine share the grid, so clicks for the same moment leave together.
type clicker struct {
	w       *webrtc.TrackLocalStaticSample
	silence []byte
	clip    *Click

	mu     sync.Mutex
	starts []time.Time // slots where the clip starts
}

const clickSlot = 20 * time.Millisecond

func newClicker(w *webrtc.TrackLocalStaticSample, clip *Click) (*clicker, error) {
	silence, err := opus.Silence(clickSlot)
	if err != nil {
		return nil, err
	}
	if len(clip.Frames) == 0 {
		return nil, errors.New("empty click clip")
	}
	return &clicker{w: w, silence: silence, clip: clip}, nil
}

func (c *clicker) click(at time.Time) {
	c.mu.Lock()
	c.starts = append(c.starts, at.Add(-c.clip.Offset).Truncate(clickSlot))
	c.mu.Unlock()
}

func (c *clicker) run(ctx context.Context) error {
	slot := time.Now().Truncate(clickSlot).Add(clickSlot)
	t := time.NewTimer(time.Until(slot))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		data := c.silence
		c.mu.Lock()
		for _, start := range c.starts {
			if i := int(slot.Sub(start) / clickSlot); !slot.Before(start) && i < len(c.clip.Frames) {
				data = c.clip.Frames[i]
			}
		}
		c.mu.Unlock()
		if err := c.w.WriteSample(media.Sample{Data: data, Duration: clickSlot}); err != nil {
			return err
		}
		slot = slot.Add(clickSlot)
		t.Reset(time.Until(slot))
	}
}

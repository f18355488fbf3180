package testmedia

import (
	"context"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media"
)

func TestOpusFrames(t *testing.T) {
	for _, name := range []string{Tone440, Tone660} {
		frames, err := OpusFrames(name)
		if err != nil {
			t.Fatal(err)
		}
		var total time.Duration
		for i, f := range frames {
			if f.Duration != 20*time.Millisecond {
				t.Fatalf("%s frame %d lasts %s, want 20ms", name, i, f.Duration)
			}
			if f.Data[0]&0x04 == 0 {
				t.Fatalf("%s frame %d is not stereo", name, i)
			}
			total += f.Duration
		}
		if total < 4900*time.Millisecond || total > 5100*time.Millisecond {
			t.Errorf("%s lasts %s, want about 5s", name, total)
		}
	}
}

func TestVideoFrames(t *testing.T) {
	for _, name := range []string{VP8, VP9, H264, AV1} {
		t.Run(name, func(t *testing.T) {
			frames, err := VideoFrames(name)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) != 45 {
				t.Errorf("%d frames, want 45 (3 s at 15 fps)", len(frames))
			}
			for i, f := range frames {
				if want := i%15 == 0; f.Keyframe != want {
					t.Errorf("frame %d: keyframe %v, want %v", i, f.Keyframe, want)
				}
				if d := f.Duration - time.Second/15; d < -time.Millisecond || d > time.Millisecond {
					t.Errorf("frame %d lasts %s", i, f.Duration)
				}
			}
		})
	}
}

func TestAssetsAreSmall(t *testing.T) {
	total := 0
	for _, a := range Assets() {
		data, err := Bytes(a.Name)
		if err != nil {
			t.Fatal(err)
		}
		total += len(data)
	}
	if total > 1<<20 {
		t.Errorf("test media total %d bytes, keep it under 1 MB", total)
	}
}

// fakeTimeline drives a Sender without real time and records what it wrote.
type fakeTimeline struct {
	now     time.Time
	samples []media.Sample
	onWrite func(n int)
}

func (f *fakeTimeline) WriteSample(s media.Sample) error {
	f.samples = append(f.samples, s)
	if f.onWrite != nil {
		f.onWrite(len(f.samples))
	}
	return nil
}

func (f *fakeTimeline) sleep(ctx context.Context, d time.Duration) error {
	if d > 0 {
		f.now = f.now.Add(d)
	}
	return ctx.Err()
}

// runPaused sends frames on a fake clock, paused (silent: DTX) from the pauseAt-th write
// to the resumeAt-th, and stops at the stopAt-th.
func runPaused(t *testing.T, frames []Frame, pauseAt, resumeAt, stopAt int) (*fakeTimeline, *Sender) {
	t.Helper()
	ft := &fakeTimeline{now: time.Unix(0, 0)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewSender(ft, frames, WithClock(func() time.Time { return ft.now }, ft.sleep))
	ft.onWrite = func(n int) {
		switch n {
		case pauseAt:
			s.Pause(PauseDTX)
		case resumeAt:
			s.Resume()
		case stopAt:
			cancel()
		}
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return ft, s
}

func TestSenderPauseDTX(t *testing.T) {
	frames, err := OpusFrames(Tone440)
	if err != nil {
		t.Fatal(err)
	}
	ft, s := runPaused(t, frames, 10, 110, 400) // loops past the end of the 250 frames
	var total time.Duration
	dtx, media := 0, 0
	for i, smp := range ft.samples {
		total += smp.Duration
		switch {
		case len(smp.Data) == 1:
			dtx++
			if i < 10 || i >= 110 {
				t.Errorf("DTX packet at slot %d outside the pause", i)
			}
		case len(smp.Data) > 1:
			media++
		default:
			if i < 10 || i >= 110 {
				t.Errorf("empty slot %d outside the pause", i)
			}
		}
	}
	if media != 300 || dtx != 5 {
		t.Errorf("%d media frames and %d DTX packets, want 300 and 5 (one per 400 ms of a 2 s pause)", media, dtx)
	}
	if total != 400*20*time.Millisecond {
		t.Errorf("timeline advanced %s, want 8s", total)
	}
	if f, d := s.Sent(); f != 300 || d != 5 {
		t.Errorf("Sent() = %d, %d", f, d)
	}
	if got := ft.now.Sub(time.Unix(0, 0)); got < 7900*time.Millisecond {
		t.Errorf("sender paced only %s of 8s", got)
	}
}

func TestSenderVideoResumesAtKeyframe(t *testing.T) {
	frames, err := VideoFrames(VP8)
	if err != nil {
		t.Fatal(err)
	}
	ft, _ := runPaused(t, frames, 5, 20, 60) // a paused video: the same as silent
	first := -1
	for i := 5; i < len(ft.samples); i++ {
		if len(ft.samples[i].Data) > 0 {
			first = i
			break
		}
	}
	if first != 30 {
		t.Fatalf("first frame after resume at slot %d, want 30 (the next keyframe)", first)
	}
}

// TestSenderTimestampJumps: after every third frame the track's clock jumps by an hour
// (an empty sample), while the frames still go out every 20 ms.
func TestSenderTimestampJumps(t *testing.T) {
	frames, err := OpusFrames(Tone440)
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeTimeline{now: time.Unix(0, 0)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewSender(ft, frames, WithClock(func() time.Time { return ft.now }, ft.sleep), WithTimestampJumps(3, time.Hour))
	ft.onWrite = func(n int) {
		if n == 40 {
			cancel()
		}
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for i, smp := range ft.samples {
		jump := i%4 == 3
		if jump != (len(smp.Data) == 0) || jump && smp.Duration != time.Hour || !jump && smp.Duration != 20*time.Millisecond {
			t.Fatalf("sample %d: %d bytes for %v", i, len(smp.Data), smp.Duration)
		}
	}
	if got := ft.now.Sub(time.Unix(0, 0)); got > time.Second {
		t.Errorf("the jumps took %v of real time", got)
	}
}

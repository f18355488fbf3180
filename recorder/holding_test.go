package recorder

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// holdingSource plays its events but holds back the last ones (as an encrypted track holds
// frames whose key has not come) until ReleaseHeld; when it has nothing, a read waits until
// the deadline is changed, like a blocked read on a live track.
type holdingSource struct {
	*fakeSource // sender reports and key frame requests
	inner       *fakeSource
	hold        int

	mu       sync.Mutex
	held     [][]byte
	released [][]byte
	wake     chan struct{}
}

func (s *holdingSource) SetReadDeadline(t time.Time) error {
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return s.inner.SetReadDeadline(t)
}

func (s *holdingSource) ReleaseHeld() bool {
	s.mu.Lock()
	s.released = append(s.released, s.held...)
	s.held = nil
	s.mu.Unlock()
	return true
}

func (s *holdingSource) ReadPacket(b []byte) (int, error) {
	for {
		s.mu.Lock()
		if len(s.released) > 0 {
			p := s.released[0]
			s.released = s.released[1:]
			s.mu.Unlock()
			return copy(b, p), nil
		}
		s.mu.Unlock()
		n, err := s.inner.ReadPacket(b)
		switch {
		case errors.Is(err, io.EOF):
			<-s.wake
			return 0, timeoutError{}
		case err != nil:
			return n, err
		}
		s.mu.Lock()
		if len(s.inner.events) < s.hold {
			s.held = append(s.held, append([]byte(nil), b[:n]...))
			s.mu.Unlock()
			continue
		}
		s.mu.Unlock()
		return n, nil
	}
}

// TestHeldPacketsReachTheFileOnStop: packets a source still holds when the recording stops
// are recorded, not dropped unseen.
func TestHeldPacketsReachTheFileOnStop(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.Tone440)
	evs := opusStream().media(t, frames, base, 0, 3*time.Second, nil)
	inner := newFakeSource(h.clock, evs)
	src := &holdingSource{fakeSource: inner, inner: inner, hold: 50, wake: make(chan struct{}, 1)}
	h.clock.set(evs[0].at)
	tr := h.add(opusInfo())
	done := make(chan error, 1)
	go func() { done <- tr.Run(context.Background(), src) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		src.mu.Lock()
		n := len(src.held)
		src.mu.Unlock()
		if n == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("source holds %d packets, want 50", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := h.close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e := filesOf(m, "")[0]
	if e.Stats.Frames != uint64(len(evs)) {
		t.Errorf("%d frames written, %d sent: held packets were lost at stop", e.Stats.Frames, len(evs))
	}
}

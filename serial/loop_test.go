package serial

import (
	"context"
	"sync"
	"testing"
	"time"
)

// bound is how long a test waits for what must happen; only a broken loop takes it.
const bound = 10 * time.Second

func waitDone(t *testing.T, l *Loop) {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(bound):
		t.Fatal("the loop did not end")
	}
}

// Functions run one at a time, in the order posted, from many posters.
func TestLoopRunsInOrder(t *testing.T) {
	l := New(context.Background())
	var mu sync.Mutex
	var got []int
	running := 0
	for i := 0; i < 1000; i++ {
		l.Post(func() {
			mu.Lock()
			running++
			if running > 1 {
				t.Error("two functions ran at once")
			}
			got = append(got, i)
			running--
			mu.Unlock()
		})
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, v := range got {
		if v != i {
			t.Fatalf("function %d ran as number %d", v, i)
		}
	}
	if len(got) != 1000 {
		t.Fatalf("%d of 1000 ran", len(got))
	}
	l.Stop()
	waitDone(t, l)
}

// Close runs what was posted, then ends; Stop drops it; both refuse more.
func TestLoopCloseDrainsStopDrops(t *testing.T) {
	gate := make(chan struct{})
	for _, tc := range []struct {
		name string
		end  func(*Loop)
		want int
	}{{"close", (*Loop).Close, 3}, {"stop", (*Loop).Stop, 0}} {
		l := New(context.Background())
		ran := 0
		started := make(chan struct{})
		l.Post(func() { close(started); <-gate })
		<-started
		for i := 0; i < 3; i++ {
			l.Post(func() { ran++ })
		}
		tc.end(l)
		if l.Post(func() { ran += 100 }) {
			t.Errorf("%s: a post after it was taken", tc.name)
		}
		gate <- struct{}{}
		waitDone(t, l)
		if ran != tc.want {
			t.Errorf("%s: %d queued functions ran, want %d", tc.name, ran, tc.want)
		}
		if err := l.Flush(context.Background()); err != nil {
			t.Errorf("%s: flush of an ended loop: %v", tc.name, err)
		}
	}
}

// A loop ends with its context, dropping what is queued.
func TestLoopEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	l := New(ctx)
	cancel()
	waitDone(t, l)
	if l.Post(func() {}) {
		t.Error("a post after the context ended was taken")
	}
}

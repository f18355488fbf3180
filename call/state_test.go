package call

import "testing"

func TestRecordingState(t *testing.T) {
	open, closed := make(chan struct{}), make(chan struct{})
	close(closed)
	for _, c := range []struct {
		done <-chan struct{}
		live int
		want State
	}{
		{open, 0, StateConnecting},
		{open, 2, StateConnected},
		{closed, 2, StateEnded},
		{nil, 1, StateConnected},
	} {
		if got := RecordingState(c.done, c.live); got != c.want {
			t.Errorf("RecordingState(closed=%v, %d) = %s, want %s", c.done == closed, c.live, got, c.want)
		}
	}
}

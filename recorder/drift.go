package recorder

import (
	"math"
	"time"
)

// Clock drift: inside a part, time is the sender's RTP clock, which runs a little faster
// or slower than ours (a sound card at 48 000 Hz ± 20 ppm, a camera's clock). Over an
// hour 20 ppm is 72 ms: enough to pull a long track away from the others on the
// timeline. The recorder does not stretch media; it measures the drift of every part
// longer than minDriftSpan and writes it in the manifest (clock_drift_ppm), so that an
// editor can stretch the file by that much to stay in sync to its end.
//
// The measure: the delay of each frame relative to the part's first one, arrival minus
// RTP time. Its least value over a window (driftWindow) is the network's fixed delay
// plus the drift so far; jitter and queues only add to it. The drift is the slope
// between the first and the latest window's least delays.
const (
	driftWindow  = 10 * time.Second
	minDriftSpan = 2 * time.Minute
)

type driftSample struct {
	pts, lag time.Duration
}

// driftMeter measures one part's clock drift. The zero value is ready.
type driftMeter struct {
	have     bool
	ref      time.Time // arrival - PTS of the part's first frame
	winStart time.Duration
	win      driftSample // least delay in the current window
	first    driftSample // least delay of the first complete window
	last     driftSample // and of the latest
	windows  int
}

// add notes a frame written at pts that arrived at arrival.
func (d *driftMeter) add(pts time.Duration, arrival time.Time) {
	if !d.have {
		d.have, d.ref, d.winStart = true, arrival.Add(-pts), pts
		d.win = driftSample{pts: pts}
		return
	}
	s := driftSample{pts: pts, lag: arrival.Sub(d.ref) - pts}
	if pts-d.winStart >= driftWindow {
		if d.windows == 0 {
			d.first = d.win
		}
		d.last = d.win
		d.windows++
		d.winStart, d.win = pts, s
		return
	}
	if s.lag < d.win.lag {
		d.win = s
	}
}

// ppm returns how much faster the sender's clock ran than ours, in parts per million
// (positive: the part holds more media time than the wall-clock time it spans), once
// the part is long enough to tell.
func (d *driftMeter) ppm() (float64, bool) {
	if d.windows < 2 || d.last.pts-d.first.pts < minDriftSpan {
		return 0, false
	}
	v := -float64(d.last.lag-d.first.lag) / float64(d.last.pts-d.first.pts) * 1e6
	return math.Round(v*10) / 10, true
}

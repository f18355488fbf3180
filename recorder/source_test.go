package recorder

import (
	"context"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// TestSenderReportRelay: reports reach the recording attached at the time, the newest one
// reaches a recording as it attaches, and a recording that ended (even if its stop comes
// late) takes none from the next one.
func TestSenderReportRelay(t *testing.T) {
	var r SenderReportRelay
	r.Deliver(SenderReport{NTPTime: 1})
	var first, second []uint64
	stop1 := r.SenderReports(func(sr SenderReport) { first = append(first, sr.NTPTime) })
	r.Deliver(SenderReport{NTPTime: 2})
	stop1()
	r.Deliver(SenderReport{NTPTime: 3})
	stop2 := r.SenderReports(func(sr SenderReport) { second = append(second, sr.NTPTime) })
	stop1() // a late second stop of the first recording
	r.Deliver(SenderReport{NTPTime: 4})
	stop2()
	r.Deliver(SenderReport{NTPTime: 5})
	if len(first) != 2 || first[0] != 1 || first[1] != 2 {
		t.Errorf("first recording got %v, want [1 2]", first)
	}
	if len(second) != 2 || second[0] != 3 || second[1] != 4 {
		t.Errorf("second recording got %v, want [3 4]", second)
	}
}

// TestRunReadsSenderReportsFromItsSource: a report the source delivers while the track runs
// places the track by its sender's clock; Run stops taking reports when it returns.
func TestRunReadsSenderReportsFromItsSource(t *testing.T) {
	h := newHarness(t, Options{})
	frames := loadFrames(t, testmedia.Tone440)
	s := opusStream()
	evs := s.media(t, frames, base, 0, 2*time.Second, nil)
	src := newFakeSource(h.clock, evs)
	sr := SenderReport{NTPTime: toNTP(base.Add(-time.Hour)), RTPTime: s.ts0, Arrival: base.Add(10 * time.Millisecond)}
	src.events = append([]event{{at: sr.Arrival, fn: func() { src.Deliver(sr) }}}, src.events...)
	h.clock.set(evs[0].at)
	tr := h.add(opusInfo())
	if err := tr.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if got, ok := tr.senderReport(); !ok || got.rtp != s.ts0 {
		t.Fatalf("track has report %+v (%v), want the source's", got, ok)
	}
	src.Deliver(SenderReport{NTPTime: toNTP(base), RTPTime: s.ts0 + 1, Arrival: base.Add(time.Minute)})
	if got, _ := tr.senderReport(); got.rtp != s.ts0 {
		t.Errorf("a report after Run returned reached the track")
	}
	h.close()
}

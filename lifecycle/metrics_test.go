package lifecycle

import (
	"context"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/matrix-recorder/matrix-recorder/config"
)

// metricValue is a counter's value, or a histogram's sample count, for the series with
// these labels (0 when there is none).
func metricValue(t *testing.T, e *env, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := e.lc.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetGauge().GetValue()
}

// Every way a recording ends is counted with its reason and kind: a person's stop, a
// limit, the end of the call, the recorder's shutdown; with its length in seconds.
func TestStoppedCountsEveryReason(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Recordings.MaxDuration = config.Duration(20 * time.Minute) })
	ctx := context.Background()
	stopped := func(reason, kind string) float64 {
		return metricValue(t, e, "matrix_recorder_recordings_stopped_total", map[string]string{"reason": reason, "kind": kind})
	}

	s, err := e.startIn("!a:x", "c1", "1:1")
	if err != nil {
		t.Fatal(err)
	}
	if n := metricValue(t, e, "matrix_recorder_recordings_started_total", map[string]string{"kind": "1:1"}); n != 1 {
		t.Errorf("started{kind=1:1} = %v", n)
	}
	e.lc.StoppedByUser("!a:x")
	e.advance(90 * time.Second)
	if _, err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := stopped("user", "1:1"); n != 1 {
		t.Errorf("stopped{user,1:1} = %v", n)
	}

	s, err = e.startIn("!b:x", "c2", "group")
	if err != nil {
		t.Fatal(err)
	}
	e.advance(21 * time.Minute)
	e.lc.checkLimits(ctx)
	if _, err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := stopped("max_duration", "mesh"); n != 1 {
		t.Errorf("stopped{max_duration,mesh} = %v", n)
	}

	s, err = e.startIn("!c:x", "c3", "livekit")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := stopped("call_ended", "livekit"); n != 1 {
		t.Errorf("stopped{call_ended,livekit} = %v", n)
	}

	s, err = e.startIn("!d:x", "c4", "egress")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	e.lc.Run(runCtx)
	stop()
	for !e.lc.shuttingDown.Load() {
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := stopped("shutdown", "egress"); n != 1 {
		t.Errorf("stopped{shutdown,egress} = %v", n)
	}
	if n := metricValue(t, e, "matrix_recorder_recording_duration_seconds", map[string]string{"kind": "1:1"}); n != 1 {
		t.Errorf("recording_duration_seconds{kind=1:1} has %v samples", n)
	}
	if n := metricValue(t, e, "matrix_recorder_build_info", nil); n != 1 {
		t.Errorf("build_info = %v", n)
	}
}

// The time from a recording's end to its summary with links is observed once the summary
// with links is in the room (here http links, ready at once), by kind.
func TestLinksDelayObserved(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.HTTP.Listen, c.HTTP.PublicURL = "127.0.0.1:0", "https://rec.example.org"
	})
	recID := e.finishedRecording(t, alice)
	ctx := context.Background()
	r, _ := e.lc.db.Recording(ctx, recID)
	e.advance(time.Hour)
	e.lc.deliver(ctx, room, r.Folder, nil, "", nil, nil, true)
	if n := metricValue(t, e, "matrix_recorder_links_delay_seconds", map[string]string{"kind": "1:1"}); n != 1 {
		t.Errorf("links_delay_seconds{kind=1:1} has %v samples, want 1", n)
	}
}

package metrics

import (
	"testing"
)

func TestLiveAndFinishedAddUp(t *testing.T) {
	live := Live{Recordings: 1, Tracks: 2, Bytes: 100, PacketsLost: 3, Undecryptable: 1}
	m := New(func() Live { return live }, func() (int64, bool) { return 5 << 30, true })
	m.FileDone(1000, 2, 0)
	m.UploadFailures.Inc()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mm := range f.GetMetric() {
			switch {
			case mm.GetGauge() != nil:
				got[f.GetName()] = mm.GetGauge().GetValue()
			case mm.GetCounter() != nil:
				got[f.GetName()] = mm.GetCounter().GetValue()
			}
		}
	}
	for name, want := range map[string]float64{
		"matrix_recorder_active_recordings":          1,
		"matrix_recorder_active_tracks":              2,
		"matrix_recorder_recorded_bytes_total":       1100,
		"matrix_recorder_packets_lost_total":         5,
		"matrix_recorder_frames_undecryptable_total": 1,
		"matrix_recorder_upload_failures_total":      1,
		"matrix_recorder_disk_free_bytes":            5 << 30,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}

// instance_info is exported only once an instance of a fleet is set, with its labels.
func TestInstanceInfo(t *testing.T) {
	m := New(func() Live { return Live{} }, func() (int64, bool) { return 0, false })
	find := func() map[string]string {
		families, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != "matrix_recorder_instance_info" {
				continue
			}
			labels := map[string]string{}
			for _, l := range f.GetMetric()[0].GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			return labels
		}
		return nil
	}
	if l := find(); l != nil {
		t.Errorf("instance_info without a fleet: %v", l)
	}
	m.SetInstance("rec-a", "DEVA")
	m.SetInstance("rec-a", "DEVB")
	if l := find(); len(l) != 2 || l["recorder_instance"] != "rec-a" || l["device_id"] != "DEVB" {
		t.Errorf("instance_info %v", l)
	}
}

// Package metrics holds the recorder's Prometheus metrics, in a registry of its own.
//
// Durations are in seconds (_seconds), sizes in bytes (_bytes). Labels: kind is the kind
// of call ("1:1", "mesh", "livekit", "egress"); reason is why a recording stopped (the
// lifecycle's StopReason values).
package metrics

import (
	"net/http"
	"runtime/debug"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Live is what the recordings in progress have done so far (files still being written).
type Live struct {
	Recordings    int
	Tracks        int
	Bytes         uint64
	PacketsLost   uint64
	Undecryptable uint64
}

// Metrics are the recorder's counters and gauges.
type Metrics struct {
	Registry *prometheus.Registry

	// Counters the bot increments.
	RecordingsStarted *prometheus.CounterVec // by kind
	RecordingsStopped *prometheus.CounterVec // by reason and kind
	// RecordingDuration is the length of each recording when it stops, by kind.
	RecordingDuration *prometheus.HistogramVec
	// LinksDelay is the time from a recording's end to its summary with links in the
	// room (the uploads included), by kind.
	LinksDelay         *prometheus.HistogramVec
	buildInfo          *prometheus.GaugeVec
	instanceInfo       *prometheus.GaugeVec
	UploadFailures     prometheus.Counter
	UploadedBytes      prometheus.Counter
	UploadsConfirmed   prometheus.Counter
	DecryptionFailures prometheus.Counter
	Interrupted        prometheus.Counter
	WriteFailures      prometheus.Counter

	mu        sync.Mutex
	done      Live // totals of finished files
	live      func() Live
	diskFree  func() (int64, bool)
	descs     struct{ active, tracks, bytes, lost, undec, disk *prometheus.Desc }
	collector prometheus.Collector
}

// New creates the metrics. live returns the state of the recordings in progress and
// diskFree the free bytes of the recordings disk; both are called on every scrape.
func New(live func() Live, diskFree func() (int64, bool)) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry(), live: live, diskFree: diskFree}
	f := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "matrix_recorder", Name: name, Help: help})
		m.Registry.MustRegister(c)
		return c
	}
	m.RecordingsStarted = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "matrix_recorder", Name: "recordings_started_total",
		Help: "Recordings started, by kind of call (a resumed recording counts again)."}, []string{"kind"})
	m.RecordingsStopped = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "matrix_recorder", Name: "recordings_stopped_total",
		Help: "Recordings stopped, by reason (user, call_ended, max_duration, max_size, disk_space, disk_share, shutdown, error) and kind of call."},
		[]string{"reason", "kind"})
	m.RecordingDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "matrix_recorder", Name: "recording_duration_seconds",
		Help:    "Length of each recording's timeline when it stopped, by kind of call.",
		Buckets: []float64{30, 60, 300, 600, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600}}, []string{"kind"})
	m.LinksDelay = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "matrix_recorder", Name: "links_delay_seconds",
		Help:    "Time from a recording's end to its summary with links in the room (uploads included), by kind of call.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 900, 3600}}, []string{"kind"})
	m.buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "matrix_recorder", Name: "build_info",
		Help: "Always 1; the labels say which build runs."}, []string{"version", "revision", "goversion"})
	// Not "instance": Prometheus gives every scraped series an instance label of its own
	// (the target), which a label of that name would clash with.
	m.instanceInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "matrix_recorder", Name: "instance_info",
		Help: "Always 1, in a fleet (database.type postgres); the labels name this recorder instance and its Matrix device."}, []string{"recorder_instance", "device_id"})
	m.Registry.MustRegister(m.RecordingsStarted, m.RecordingsStopped, m.RecordingDuration, m.LinksDelay, m.buildInfo, m.instanceInfo)
	m.SetBuildInfo(BuildInfo{})
	m.UploadFailures = f("upload_failures_total", "Failed upload attempts (each is retried).")
	m.UploadedBytes = f("uploaded_bytes_total", "Bytes sent to object storage (parts sent again count again).")
	m.UploadsConfirmed = f("uploads_confirmed_total", "Files whose copy in object storage was confirmed.")
	m.DecryptionFailures = f("decryption_failures_total", "Matrix events the bot could not decrypt (missing or withheld keys).")
	m.Interrupted = f("recordings_interrupted_total", "Recordings found interrupted at start-up (the process had died).")
	m.WriteFailures = f("write_failures_total", "Times a track could not write its file (a full or failing disk); it goes on by itself when the disk takes writes again.")
	ns := "matrix_recorder_"
	m.descs.active = prometheus.NewDesc(ns+"active_recordings", "Recordings in progress.", nil, nil)
	m.descs.tracks = prometheus.NewDesc(ns+"active_tracks", "Files being written.", nil, nil)
	m.descs.bytes = prometheus.NewDesc(ns+"recorded_bytes_total", "Bytes of media recorded (finished files at their final size).", nil, nil)
	m.descs.lost = prometheus.NewDesc(ns+"packets_lost_total", "RTP packets lost before they reached the recorder.", nil, nil)
	m.descs.undec = prometheus.NewDesc(ns+"frames_undecryptable_total", "Media frames dropped because they could not be decrypted (E2EE key failures).", nil, nil)
	m.descs.disk = prometheus.NewDesc(ns+"disk_free_bytes", "Free space on the recordings disk.", nil, nil)
	m.Registry.MustRegister(collector{m}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// BuildInfo names the running build (build_info's labels).
type BuildInfo struct {
	Version, Revision, GoVersion string
}

// SetBuildInfo sets build_info; empty fields are read from the binary's build information.
func (m *Metrics) SetBuildInfo(b BuildInfo) {
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" {
			b.Version = info.Main.Version
		}
		if b.GoVersion == "" {
			b.GoVersion = info.GoVersion
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && b.Revision == "" {
				b.Revision = s.Value
			}
		}
	}
	m.buildInfo.Reset()
	m.buildInfo.WithLabelValues(b.Version, b.Revision, b.GoVersion).Set(1)
}

// SetInstance sets instance_info: which instance of a fleet these metrics are, as
// device. Without a fleet it is not set (and not exported).
func (m *Metrics) SetInstance(instance, device string) {
	m.instanceInfo.Reset()
	m.instanceInfo.WithLabelValues(instance, device).Set(1)
}

// Path is where the metrics are served.
const Path = "/metrics"

// Handler serves the registry in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// FileDone adds a finished file to the totals.
func (m *Metrics) FileDone(bytes, lost, undecryptable uint64) {
	m.mu.Lock()
	m.done.Bytes += bytes
	m.done.PacketsLost += lost
	m.done.Undecryptable += undecryptable
	m.mu.Unlock()
}

type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	d := c.m.descs
	for _, x := range []*prometheus.Desc{d.active, d.tracks, d.bytes, d.lost, d.undec, d.disk} {
		ch <- x
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	var live Live
	if m.live != nil {
		live = m.live()
	}
	m.mu.Lock()
	done := m.done
	m.mu.Unlock()
	d := m.descs
	ch <- prometheus.MustNewConstMetric(d.active, prometheus.GaugeValue, float64(live.Recordings))
	ch <- prometheus.MustNewConstMetric(d.tracks, prometheus.GaugeValue, float64(live.Tracks))
	ch <- prometheus.MustNewConstMetric(d.bytes, prometheus.CounterValue, float64(done.Bytes+live.Bytes))
	ch <- prometheus.MustNewConstMetric(d.lost, prometheus.CounterValue, float64(done.PacketsLost+live.PacketsLost))
	ch <- prometheus.MustNewConstMetric(d.undec, prometheus.CounterValue, float64(done.Undecryptable+live.Undecryptable))
	if m.diskFree != nil {
		if free, ok := m.diskFree(); ok {
			ch <- prometheus.MustNewConstMetric(d.disk, prometheus.GaugeValue, float64(free))
		}
	}
}

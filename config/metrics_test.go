package config

import (
	"strings"
	"testing"
)

// /metrics on the public port still works for a release, with a warning that says where
// it moves; metrics.listen set (or no http.listen) gives no warning.
func TestMetricsOnPublicPortWarns(t *testing.T) {
	l, e := read(t, account+"http:\n  listen: ':8080'\n")
	if e != nil {
		t.Fatal(e)
	}
	if !l.Config.MetricsOnPublicListener() {
		t.Error("metrics are not on http.listen without metrics.listen")
	}
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "metrics.listen") {
		t.Errorf("warnings %q, want one that names metrics.listen", l.Warnings)
	}
	for _, text := range []string{
		account + "http:\n  listen: ':8080'\nmetrics:\n  listen: 127.0.0.1:9100\n",
		account,
		account + "http:\n  listen: ':8080'\n  metrics: false\n",
	} {
		l, e := read(t, text)
		if e != nil {
			t.Fatal(e)
		}
		if l.Config.MetricsOnPublicListener() || len(l.Warnings) != 0 {
			t.Errorf("%s: on the public port %v, warnings %q", text, l.Config.MetricsOnPublicListener(), l.Warnings)
		}
	}
}

func TestMetricsListenChecked(t *testing.T) {
	_, e := read(t, account+"http:\n  listen: ':8080'\nmetrics:\n  listen: ':8080'\n")
	wantProblems(t, e, "metrics.listen \":8080\" must differ from http.listen")
	_, e = read(t, account+"metrics:\n  listen: 'localhost'\n")
	wantProblems(t, e, "metrics.listen \"localhost\" must be host:port")
	_, e = read(t, account, "MATRIX_RECORDER_METRICS_LISTEN=127.0.0.1:9100")
	if e != nil {
		t.Errorf("metrics.listen from the environment: %v", e)
	}
}

func TestLogFormats(t *testing.T) {
	l, e := read(t, account)
	if e != nil {
		t.Fatal(e)
	}
	if l.Config.Log.Format != LogAuto {
		t.Errorf("log.format defaults to %q, want auto", l.Config.Log.Format)
	}
	for _, f := range []string{"auto", "json", "console"} {
		if _, e := read(t, account+"log:\n  format: "+f+"\n"); e != nil {
			t.Errorf("log.format %s: %v", f, e)
		}
	}
	_, e = read(t, account+"log:\n  format: text\n")
	wantProblems(t, e, `log.format "text" must be auto, json or console`)
}

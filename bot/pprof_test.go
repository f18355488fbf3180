package bot

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWithPprof(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("inner " + r.URL.Path)) })
	h := withPprof(inner)
	for path, want := range map[string]string{
		"/debug/pprof/":          "goroutine",
		"/debug/pprof/goroutine": "goroutine profile",
		"/metrics":               "inner /metrics",
		"/debug/other":           "inner /debug/other",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path+"?debug=1", nil))
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %q, want it to contain %q", path, rec.Body.String()[:min(200, rec.Body.Len())], want)
		}
	}
}

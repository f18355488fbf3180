package httpserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestHandlePprof(t *testing.T) {
	s := New(zerolog.Nop())
	s.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("inner " + r.URL.Path)) }))
	HandlePprof(s)
	h := s.Handler()
	for path, want := range map[string]string{
		"/debug/pprof/":          "goroutine",
		"/debug/pprof/goroutine": "goroutine profile",
		"/metrics":               "inner /metrics",
		"/debug/other":           "404",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path+"?debug=1", nil))
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %q, want it to contain %q", path, rec.Body.String()[:min(200, rec.Body.Len())], want)
		}
	}
}

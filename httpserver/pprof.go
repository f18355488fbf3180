package httpserver

import (
	"net/http"
	"net/http/pprof"
)

// PprofPath is where Go's profiler is served (http.pprof, off by default; config allows
// it on a loopback http.listen only).
const PprofPath = "/debug/pprof/"

// HandlePprof serves Go's profiler under PprofPath on s.
func HandlePprof(s *Server) {
	s.Handle("GET "+PprofPath, http.HandlerFunc(pprof.Index))
	s.Handle("GET "+PprofPath+"cmdline", http.HandlerFunc(pprof.Cmdline))
	s.Handle("GET "+PprofPath+"profile", http.HandlerFunc(pprof.Profile))
	s.Handle("GET "+PprofPath+"symbol", http.HandlerFunc(pprof.Symbol))
	s.Handle("GET "+PprofPath+"trace", http.HandlerFunc(pprof.Trace))
}

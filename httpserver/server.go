// Package httpserver is the recorder's HTTP servers: listeners (http.listen, the public
// one; metrics.listen, the private one) whose routes their owners register (downloads and
// bucket notifications: the recording lifecycle; LiveKit's webhooks: the Egress backend;
// /metrics and /healthz: the wiring in the bot), with limits that keep slow or stalled
// clients from holding connections, and /healthz's named readiness checks.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// Server collects routes and serves them.
type Server struct {
	mux    *http.ServeMux
	log    zerolog.Logger
	limits Limits
}

// New returns a server with DefaultLimits and no routes.
func New(log zerolog.Logger) *Server {
	return &Server{mux: http.NewServeMux(), log: log, limits: DefaultLimits()}
}

// SetLimits replaces the limits (tests shorten them).
func (s *Server) SetLimits(l Limits) { s.limits = l }

// Handle registers a route (an http.ServeMux pattern, e.g. "GET /download/{token}/{name}").
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler is every route registered so far, with the limits applied.
func (s *Server) Handler() http.Handler { return bounded(s.mux, s.limits) }

// Start listens on listen and serves until ctx ends, then shuts down (bounded). done
// reports how serving ended.
func (s *Server) Start(ctx context.Context, listen string) (addr string, done <-chan error, err error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return "", nil, fmt.Errorf("listen on %s: %w", listen, err)
	}
	srv := newServer(s.Handler(), s.limits)
	out := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		out <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	s.log.Info().Str("listen", ln.Addr().String()).Msg("HTTP server listening")
	return ln.Addr().String(), out, nil
}

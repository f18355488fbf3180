package httpserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/rs/zerolog"
)

// Listeners are the recorder's HTTP servers: the public one (http.listen) with the routes
// their owners register and /healthz, and the metrics one (metrics.listen) with the
// metrics and /healthz.
type Listeners struct {
	// Public and Metrics are the addresses; "" serves nothing there.
	Public, Metrics string
	// Routes registers the public routes (downloads, notifications, webhooks).
	Routes func(*Server) error
	// MetricsHandler is served at MetricsPath on Metrics, and on Public when
	// MetricsOnPublic.
	MetricsHandler  http.Handler
	MetricsPath     string
	MetricsOnPublic bool
	// Pprof serves net/http/pprof on Public (HandlePprof).
	Pprof bool
	// Checks are /healthz's conditions.
	Checks []Check
	// Instance names the instance of a fleet in /healthz's report ("" with one).
	Instance string
}

// Start serves until ctx ends; the channels report how each server stopped.
func (l Listeners) Start(ctx context.Context, log zerolog.Logger) ([]<-chan error, error) {
	var dones []<-chan error
	health := HealthOf(l.Instance, l.Checks...)
	if l.Public != "" {
		srv := New(log.With().Str("component", "http").Str("listener", "http").Logger())
		if l.Routes != nil {
			if err := l.Routes(srv); err != nil {
				return nil, err
			}
		}
		if l.MetricsOnPublic {
			srv.Handle("GET "+l.MetricsPath, l.MetricsHandler)
		}
		srv.Handle("GET "+HealthPath, health)
		if l.Pprof {
			HandlePprof(srv)
		}
		_, done, err := srv.Start(ctx, l.Public)
		if err != nil {
			return nil, fmt.Errorf("http.listen: %w", err)
		}
		dones = append(dones, done)
	}
	if l.Metrics != "" {
		srv := New(log.With().Str("component", "http").Str("listener", "metrics").Logger())
		srv.Handle("GET "+l.MetricsPath, l.MetricsHandler)
		srv.Handle("GET "+HealthPath, health)
		_, done, err := srv.Start(ctx, l.Metrics)
		if err != nil {
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
		dones = append(dones, done)
	}
	return dones, nil
}

// Wait waits for the servers Start started to stop, bounded by ctx.
func Wait(ctx context.Context, dones []<-chan error) error {
	var errs []error
	for _, done := range dones {
		select {
		case err := <-done:
			errs = append(errs, err)
		case <-ctx.Done():
			return errors.Join(append(errs, errors.New("the HTTP server did not stop in time"))...)
		}
	}
	return errors.Join(errs...)
}

package bot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-recorder/matrix-recorder/httpserver"
	"github.com/matrix-recorder/matrix-recorder/metrics"
)

// syncMaxAge is how old the last successful sync may be before /healthz says the bot is
// not ready: a sync returns at least every 30 s when nothing happens, and a failing one is
// retried within a minute.
const syncMaxAge = 3 * time.Minute

// startHTTP serves what the owners register: on http.listen the lifecycle's downloads
// and bucket notifications, LiveKit Egress's webhooks and /healthz; on metrics.listen
// /metrics and /healthz (/metrics stays on http.listen when metrics.listen is not set, for
// this release). They serve until ctx ends; the channels report how each stopped.
func (b *Bot) startHTTP(ctx context.Context) ([]<-chan error, error) {
	var dones []<-chan error
	h := b.cfg.HTTP
	health := httpserver.Health(b.healthChecks()...)
	if h.Listen != "" {
		srv := httpserver.New(b.log.With().Str("component", "http").Str("listener", "http").Logger())
		if err := b.lc.Routes(srv); err != nil {
			return nil, err
		}
		if b.egress != nil {
			lk := b.egress.Handler()
			for _, p := range b.egress.WebhookPaths() {
				srv.Handle(p, lk)
			}
		}
		if b.cfg.MetricsOnPublicListener() {
			srv.Handle("GET "+metrics.Path, b.lc.Metrics().Handler())
		}
		srv.Handle("GET "+httpserver.HealthPath, health)
		if h.Pprof {
			httpserver.HandlePprof(srv)
		}
		_, done, err := srv.Start(ctx, h.Listen)
		if err != nil {
			return nil, fmt.Errorf("http.listen: %w", err)
		}
		dones = append(dones, done)
	}
	if m := b.cfg.Metrics.Listen; m != "" {
		srv := httpserver.New(b.log.With().Str("component", "http").Str("listener", "metrics").Logger())
		srv.Handle("GET "+metrics.Path, b.lc.Metrics().Handler())
		srv.Handle("GET "+httpserver.HealthPath, health)
		_, done, err := srv.Start(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
		dones = append(dones, done)
	}
	return dones, nil
}

// waitHTTP waits for the HTTP servers to stop, bounded by ctx.
func waitHTTP(ctx context.Context, dones []<-chan error) error {
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

// healthChecks are /healthz's conditions: the sync loop is alive (its last success is at
// most syncMaxAge old), the state database answers, data_dir and recordings.dir take a
// file, and the recordings disk has more than recordings.min_free_space free.
func (b *Bot) healthChecks() []httpserver.Check {
	out := []httpserver.Check{{Name: "sync", Run: b.synced.Check}}
	for _, c := range b.lc.HealthChecks() {
		out = append(out, httpserver.Check(c))
	}
	return out
}

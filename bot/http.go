package bot

import (
	"context"
	"errors"

	"github.com/matrix-recorder/matrix-recorder/httpserver"
	"github.com/matrix-recorder/matrix-recorder/metrics"
)

// startHTTP serves on http.listen what its owners register: the lifecycle's downloads and
// bucket notifications, LiveKit Egress's webhooks, /metrics and /healthz. It serves until
// ctx ends; the channel reports how it stopped (nil without http.listen).
func (b *Bot) startHTTP(ctx context.Context) (<-chan error, error) {
	h := b.cfg.HTTP
	if h.Listen == "" {
		return nil, nil
	}
	srv := httpserver.New(b.log.With().Str("component", "http").Logger())
	if err := b.lc.Routes(srv); err != nil {
		return nil, err
	}
	if b.egress != nil {
		lk := b.egress.Handler()
		for _, p := range b.egress.WebhookPaths() {
			srv.Handle(p, lk)
		}
	}
	if h.Metrics {
		srv.Handle("GET "+metrics.Path, b.lc.Metrics().Handler())
	}
	srv.Handle("GET "+httpserver.HealthPath, httpserver.Health(b.health))
	_, done, err := srv.Start(ctx, h.Listen)
	return done, err
}

// waitHTTP waits for the HTTP server to stop, bounded by ctx.
func waitHTTP(ctx context.Context, done <-chan error) error {
	if done == nil {
		return nil
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errors.New("the HTTP server did not stop in time")
	}
}

// health is healthy when the first sync is done, the state database answers and
// data_dir is writable.
func (b *Bot) health(ctx context.Context) error {
	select {
	case <-b.ready:
	default:
		return errors.New("not synced with the homeserver yet")
	}
	return b.lc.Health(ctx)
}

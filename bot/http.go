package bot

import (
	"context"
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
	// /healthz: the sync loop is alive (its last success is at most syncMaxAge old), and
	// the lifecycle's checks (state database, data_dir, recordings.dir, free space).
	checks := []httpserver.Check{{Name: "sync", Run: b.synced.Check}}
	for _, c := range b.lc.HealthChecks() {
		checks = append(checks, httpserver.Check(c))
	}
	return httpserver.Listeners{
		Public: b.cfg.HTTP.Listen, Metrics: b.cfg.Metrics.Listen,
		Routes: func(srv *httpserver.Server) error {
			if err := b.lc.Routes(srv); err != nil {
				return err
			}
			if b.egress != nil {
				lk := b.egress.Handler()
				for _, p := range b.egress.WebhookPaths() {
					srv.Handle(p, lk)
				}
			}
			return nil
		},
		MetricsHandler: b.lc.Metrics().Handler(), MetricsPath: metrics.Path, MetricsOnPublic: b.cfg.MetricsOnPublicListener(),
		Pprof: b.cfg.HTTP.Pprof, Checks: checks, Instance: b.instance,
	}.Start(ctx, b.log)
}

package bot

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/matrix-recorder/matrix-recorder/httpserver"
	"github.com/matrix-recorder/matrix-recorder/lifecycle/download"
	"github.com/matrix-recorder/matrix-recorder/lifecycle/upload"
	"github.com/matrix-recorder/matrix-recorder/metrics"
)

// startHTTP serves downloads, bucket events, metrics and health on http.listen.
func (st *storeRT) startHTTP() error {
	h := st.cfg.HTTP
	if h.Listen == "" {
		return nil
	}
	dir, err := filepath.Abs(st.cfg.Recordings.Dir)
	if err != nil {
		return err
	}
	srv := httpserver.New(st.log.With().Str("component", "http").Logger())
	o := download.Options{
		DB: st.db, Dir: dir, Log: st.log.With().Str("component", "http").Logger(),
		Links: st.signer, LinkExpiry: st.linkExpiry(), Now: st.now, CommandPrefix: st.cfg.Bot.CommandPrefix,
	}
	if st.s3 != nil {
		o.Presigner = st.s3
	}
	srv.Handle(download.Pattern, download.Handler(o))
	if st.up != nil && h.WebhookToken != "" {
		// The uploader's, or LiveKit Egress's own uploads (egress_backend.go).
		srv.Handle(upload.EventsPath, upload.Events(upload.EventOptions{Token: h.WebhookToken, Confirm: st.confirmStoreEvent, Log: st.log}))
	}
	if h.Metrics {
		srv.Handle("GET "+metrics.Path, st.m.Handler())
	}
	srv.Handle("GET "+httpserver.HealthPath, httpserver.Health(st.health))
	st.b.egressRoutes(srv)
	addr, done, err := srv.Start(st.ctx, h.Listen)
	if err != nil {
		return err
	}
	st.httpAddr = addr
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		if err := <-done; err != nil {
			st.log.Error().Err(err).Msg("HTTP server stopped")
		}
	}()
	return nil
}

// health is healthy when the first sync is done, the state database answers and
// data_dir is writable.
func (st *storeRT) health(ctx context.Context) error {
	select {
	case <-st.b.ready:
	default:
		return errors.New("not synced with the homeserver yet")
	}
	if err := st.db.Ping(ctx); err != nil {
		return err
	}
	return checkDataDir(st.cfg.DataDir)
}

// linkExpiry is how long a link works: presigned ones and the bot's own alike.
func (st *storeRT) linkExpiry() time.Duration { return st.cfg.Storage.S3.PresignExpiry.D() }

package bot

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/matrix-recorder/matrix-recorder/storage/web"
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
	o := web.Options{
		DB: st.db, Dir: dir, WebhookToken: h.WebhookToken, Health: st.health,
		Log: st.log.With().Str("component", "http").Logger(),
	}
	if st.s3 != nil {
		o.Presigner = st.s3
	}
	if st.up != nil {
		o.Confirm = st.confirmStoreEvent // uploader, or LiveKit Egress's own uploads (egress_backend.go)
	}
	if h.Metrics {
		o.Gatherer = prometheus.Gatherers{st.m.Registry}
	}
	addr, done, err := web.Serve(st.ctx, h.Listen, st.b.egressRoutes(web.Handler(o)), st.log)
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

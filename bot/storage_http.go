package bot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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
		Log:   st.log.With().Str("component", "http").Logger(),
		Links: st.signer, LinkExpiry: st.linkExpiry(), Now: st.now, CommandPrefix: st.cfg.Bot.CommandPrefix,
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
	handler := st.b.egressRoutes(web.Handler(o))
	if h.Pprof {
		handler = withPprof(handler)
	}
	addr, done, err := web.Serve(st.ctx, h.Listen, handler, st.log)
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

// linkKeyFile in data_dir holds the key that signs the bot's own download links.
const linkKeyFile = "link.key"

// loadLinkSigner reads the link-signing key from data_dir, generating it on first use.
func loadLinkSigner(dataDir string) (*web.LinkSigner, error) {
	path := filepath.Join(dataDir, linkKeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		if key, derr := hex.DecodeString(strings.TrimSpace(string(data))); derr == nil && len(key) >= 32 {
			return web.NewLinkSigner(key), nil
		}
		return nil, fmt.Errorf("%s is not a link key (64 hex digits); delete it to make a new one (links posted so far stop working)", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the link key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate the link key: %w", err)
	}
	if err := writeSecretFile(path, []byte(hex.EncodeToString(key)+"\n")); err != nil {
		return nil, fmt.Errorf("write the link key: %w", err)
	}
	return web.NewLinkSigner(key), nil
}

// linkExpiry is how long a link works: presigned ones and the bot's own alike.
func (st *storeRT) linkExpiry() time.Duration { return st.cfg.Storage.S3.PresignExpiry.D() }

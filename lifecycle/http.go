package lifecycle

import (
	"net/http"
	"path/filepath"
	"time"

	"github.com/matrix-recorder/matrix-recorder/lifecycle/download"
	"github.com/matrix-recorder/matrix-recorder/lifecycle/upload"
)

// Router is where the lifecycle registers its HTTP routes (httpserver.Server).
type Router interface {
	Handle(pattern string, h http.Handler)
}

// Routes registers the lifecycle's routes: the recorder's own download links, and the
// bucket's notifications that confirm uploads (with storage.s3 and http.webhook_token).
func (lc *Lifecycle) Routes(r Router) error {
	dir, err := filepath.Abs(lc.cfg.Recordings.Dir)
	if err != nil {
		return err
	}
	log := lc.root.With().Str("component", "http").Logger()
	o := download.Options{
		DB: lc.db, Dir: dir, Log: log,
		Links: lc.signer, LinkExpiry: lc.linkExpiry(), Now: lc.now, CommandPrefix: lc.cfg.Bot.CommandPrefix,
	}
	if lc.s3 != nil {
		o.Presigner = lc.s3
	}
	r.Handle(download.Pattern, download.Handler(o))
	if lc.up != nil && lc.cfg.HTTP.WebhookToken != "" {
		// The uploader's own copies and LiveKit Egress's alike.
		r.Handle(upload.EventsPath, upload.Events(upload.EventOptions{Token: lc.cfg.HTTP.WebhookToken, Confirm: lc.up.ConfirmFromStore, Log: log}))
	}
	return nil
}

// linkExpiry is how long a link works: presigned ones and the recorder's own alike.
func (lc *Lifecycle) linkExpiry() time.Duration { return lc.cfg.Storage.S3.PresignExpiry.D() }

// EgressStore is where LiveKit Egress uploads, nil without storage.s3.
func (lc *Lifecycle) EgressStore() *EgressStore { return lc.egress }

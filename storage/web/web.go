// Package web is the recorder's own HTTP server: file downloads behind unguessable
// tokens, bucket notifications that confirm uploads, Prometheus metrics and a health check.
package web

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/notification"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// Presigner makes links to objects (s3store.Store).
type Presigner interface {
	Key(folder, file string) string
	Presign(ctx context.Context, key, filename string, expiry time.Duration) (string, error)
}

// Options configure the handler.
type Options struct {
	DB *storage.DB
	// Dir is the recordings root.
	Dir string
	// Presigner, when set, serves files whose local copy is gone from object storage.
	Presigner Presigner
	// Confirm, when set with WebhookToken, handles bucket notifications (upload.Uploader's
	// ConfirmFromStore). The key is decoded; size is SizeUnknown when the event does not
	// say (match on the ETag then); etag has no quotes.
	Confirm      func(ctx context.Context, bucket, key string, size int64, etag string) (bool, error)
	WebhookToken string
	// Gatherer, when set, is served at /metrics.
	Gatherer prometheus.Gatherer
	// Health reports whether the recorder works; nil error means healthy.
	Health func(ctx context.Context) error
	Log    zerolog.Logger
	// Links verifies signed download links (LinkSigner.URL). LinkExpiry is how long the
	// unsigned links handed out before links were signed keep working after their
	// recording ended (0: they do not). Now is the clock (nil: time.Now).
	Links      *LinkSigner
	LinkExpiry time.Duration
	Now        func() time.Time
	// CommandPrefix is the bot's, for the hint on an expired link.
	CommandPrefix string
}

// Routes.
const (
	DownloadPath = "/download/"
	WebhookPath  = "/s3/events"
)

// DownloadURL is the link to a file for a public base URL.
func DownloadURL(base, token, file string) string {
	return strings.TrimRight(base, "/") + DownloadPath + token + "/" + url.PathEscape(file)
}

// Handler returns the server's routes.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	s := &server{o: o}
	mux.HandleFunc("GET "+DownloadPath+"{token}/{name}", s.download)
	mux.HandleFunc("GET /healthz", s.health)
	if o.Confirm != nil && o.WebhookToken != "" {
		mux.HandleFunc("POST "+WebhookPath, s.webhook)
		// MinIO checks that a webhook target answers before it uses it (versitygw posts a
		// test event, which the POST route takes).
		mux.HandleFunc("HEAD "+WebhookPath, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	}
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

type server struct{ o Options }

var tokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

func (s *server) download(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	if !tokenPattern.MatchString(token) {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	part, err := s.o.DB.PartByToken(ctx, token)
	if errors.Is(err, storage.ErrNotFound) {
		http.NotFound(w, r)
		return
	} else if err != nil {
		s.o.Log.Error().Err(err).Msg("Download: database error")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	rec, err := s.o.DB.Recording(ctx, part.RecordingID)
	if err != nil {
		s.o.Log.Error().Err(err).Msg("Download: database error")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if rec.Status.Gone() || part.Status.Gone() {
		http.Error(w, "This recording was deleted.", http.StatusGone)
		return
	}
	if !s.linkUsable(w, r, token, rec) {
		return
	}
	log := s.o.Log.With().Str("recording", rec.ID).Str("file", part.File).Logger()
	path := filepath.Join(s.o.Dir, filepath.Base(rec.Folder), filepath.Base(part.File))
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", s3store.ContentType(part.File))
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": part.File}))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "private, no-store")
		log.Info().Str("remote", r.RemoteAddr).Msg("Serving a download")
		http.ServeContent(w, r, "", fi.ModTime(), f)
		return
	}
	if s.o.Presigner != nil {
		if u, err := s.o.DB.UploadOf(ctx, rec.ID, part.File); err == nil && u.Status == storage.UploadConfirmed {
			link, err := s.o.Presigner.Presign(ctx, u.Key, part.File, time.Hour)
			if err != nil {
				log.Warn().Err(err).Msg("Download: could not presign")
				http.Error(w, "the object store is not reachable", http.StatusBadGateway)
				return
			}
			w.Header().Set("Cache-Control", "private, no-store")
			http.Redirect(w, r, link, http.StatusFound)
			return
		}
	}
	http.NotFound(w, r)
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if s.o.Health != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.o.Health(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "unhealthy", "error": err.Error()})
			return
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "ok"})
}

// events is a bucket notification: S3's event notification JSON ({"Records": [...]}),
// as AWS S3, MinIO (which wraps it with EventName and Key) and versitygw send it.
type events struct {
	Records []notification.Event `json:"Records"`
}

// SizeUnknown is the size Confirm gets when the event does not give the object's size:
// versitygw (v1.8) reports 0 for an object made by a multipart upload. The ETag of such
// an object (the MD5 of its parts' MD5s and their count) still identifies it.
const SizeUnknown int64 = -1

var multipartETag = regexp.MustCompile(`^[0-9a-fA-F]{32}-[0-9]+$`)

// eventSize is the record's object size, or SizeUnknown.
func eventSize(size int64, etag string) int64 {
	if size == 0 && multipartETag.MatchString(etag) {
		return SizeUnknown
	}
	return size
}

// eventKeys are the object keys a record may mean, most likely first. S3 (AWS, MinIO)
// URL-encodes the key in events ("calls%2Fa+b.ogg" for "calls/a b.ogg"); versitygw sends
// it as it is. A key that does not decode can only be the raw one.
func eventKeys(raw string) []string {
	key, err := url.QueryUnescape(raw)
	switch {
	case err != nil:
		return []string{raw}
	case key != raw:
		return []string{key, raw}
	default:
		return []string{key}
	}
}

const maxEventBody = 1 << 20

func (s *server) authorized(r *http.Request) bool {
	got := r.URL.Query().Get("token")
	if a := r.Header.Get("Authorization"); a != "" {
		got = strings.TrimSpace(strings.TrimPrefix(a, "Bearer "))
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.o.WebhookToken)) == 1
}

func (s *server) webhook(w http.ResponseWriter, r *http.Request) {
	if !s.eventPrecheck(w, r) {
		return
	}
	if !s.authorized(r) {
		s.o.Log.Warn().Str("remote", r.RemoteAddr).Msg("Storage event with a wrong token")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxEventBody+1))
	if err != nil || len(body) > maxEventBody {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var ev events
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	// A body without records is a store's test event (versitygw posts one when it starts).
	for _, rec := range ev.Records {
		// MinIO and versitygw name events "s3:ObjectCreated:Put", AWS "ObjectCreated:Put".
		if !strings.HasPrefix(strings.TrimPrefix(rec.EventName, "s3:"), "ObjectCreated:") {
			continue
		}
		bucket := rec.S3.Bucket.Name
		etag := strings.Trim(rec.S3.Object.ETag, `"`)
		size := eventSize(rec.S3.Object.Size, etag)
		for _, key := range eventKeys(rec.S3.Object.Key) {
			matched, err := s.o.Confirm(r.Context(), bucket, key, size, etag)
			log := s.o.Log.With().Str("bucket", bucket).Str("key", key).Logger()
			if err != nil {
				log.Warn().Err(err).Msg("Storage event does not confirm the upload")
			} else if matched {
				log.Debug().Str("event", rec.EventName).Msg("Storage event for an upload")
			}
			if matched || err != nil {
				break
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

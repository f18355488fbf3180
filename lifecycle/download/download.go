// Package download serves the recordings' files over HTTP behind unguessable tokens, with
// signed links that expire like presigned ones: the bot's own links (storage.links: http),
// and the way to a file whose local copy was removed after its upload.
package download

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// Presigner makes links to objects (s3store.Store).
type Presigner interface {
	Presign(ctx context.Context, key, filename string, expiry time.Duration) (string, error)
}

// Options configure the handler.
type Options struct {
	DB *storage.DB
	// Dir is the recordings root.
	Dir string
	// Presigner, when set, serves files whose local copy is gone from object storage.
	Presigner Presigner
	Log       zerolog.Logger
	// Links verifies signed download links (Signer.URL). LinkExpiry is how long the
	// unsigned links handed out before links were signed keep working after their
	// recording ended (0: they do not). Now is the clock (nil: time.Now).
	Links      *Signer
	LinkExpiry time.Duration
	Now        func() time.Time
	// CommandPrefix is the bot's, for the hint on an expired link.
	CommandPrefix string
}

// Path is where downloads are served: Path + token + "/" + file name.
const Path = "/download/"

// Pattern is the route to register the handler at.
const Pattern = "GET " + Path + "{token}/{name}"

// URL is the link to a file for a public base URL (unsigned: Signer.URL signs it).
func URL(base, token, file string) string {
	return strings.TrimRight(base, "/") + Path + token + "/" + url.PathEscape(file)
}

// Handler serves Pattern.
func Handler(o Options) http.Handler {
	s := &server{o: o}
	return http.HandlerFunc(s.download)
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

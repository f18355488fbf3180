package upload

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/minio/minio-go/v7/pkg/notification"
	"github.com/rs/zerolog"
)

// EventsPath is where the bucket's notifications are posted (with ?token= or a bearer
// token: http.webhook_token).
const EventsPath = "/s3/events"

// EventOptions configure the bucket notifications' handler.
type EventOptions struct {
	// Token is the secret the store sends with each notification (http.webhook_token).
	Token string
	// Confirm takes one notification of an object created: the key is decoded; size is
	// SizeUnknown when the event does not say (match on the ETag then); etag has no
	// quotes. It reports whether the object is one of ours (Uploader.ConfirmFromStore).
	Confirm func(ctx context.Context, bucket, key string, size int64, etag string) (bool, error)
	Log     zerolog.Logger
}

// Events is the handler of the bucket's notifications: POST EventsPath with S3's event
// JSON, and HEAD EventsPath (MinIO checks that a webhook target answers before it uses
// it; versitygw posts a test event, which POST takes).
func Events(o EventOptions) http.Handler {
	s := &events{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+EventsPath, s.post)
	mux.HandleFunc("HEAD "+EventsPath, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	return mux
}

type events struct{ o EventOptions }

// events is a bucket notification: S3's event notification JSON ({"Records": [...]}),
// as AWS S3, MinIO (which wraps it with EventName and Key) and versitygw send it.
type eventBody struct {
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

func (s *events) authorized(r *http.Request) bool {
	got := r.URL.Query().Get("token")
	if a := r.Header.Get("Authorization"); a != "" {
		got = strings.TrimSpace(strings.TrimPrefix(a, "Bearer "))
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.o.Token)) == 1
}

func (s *events) post(w http.ResponseWriter, r *http.Request) {
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
	var ev eventBody
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

// eventPrecheck refuses a bucket notification before its body is read: without a token
// (401), without a declared length (411: chunked bodies are not read) or longer than an
// event can be (413).
func (s *events) eventPrecheck(w http.ResponseWriter, r *http.Request) bool {
	code := 0
	switch {
	case r.URL.Query().Get("token") == "" && r.Header.Get("Authorization") == "":
		s.o.Log.Warn().Str("remote", r.RemoteAddr).Msg("Storage event without a token")
		code = http.StatusUnauthorized
	case r.ContentLength < 0:
		code = http.StatusLengthRequired
	case r.ContentLength > maxEventBody:
		code = http.StatusRequestEntityTooLarge
	default:
		return true
	}
	// The body stays unread; do not keep the connection for what may follow it.
	w.Header().Set("Connection", "close")
	http.Error(w, http.StatusText(code), code)
	return false
}

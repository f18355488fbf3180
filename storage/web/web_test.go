package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

type fixture struct {
	srv   *httptest.Server
	db    *storage.DB
	part  *storage.Part
	rec   *storage.Recording
	dir   string
	token string
	mu    sync.Mutex
	// known, when set, are the bucket/key pairs Confirm matches (else it matches all).
	known   map[string]bool
	seen    []string // every Confirm call: bucket|key|size|etag
	matched []string // the calls that matched
	links   *LinkSigner
}

func newFixture(t *testing.T, healthErr error) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := storage.Open(ctx, filepath.Join(dir, storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	rec := &storage.Recording{RoomID: "!r:x", CallID: "c", Kind: "1:1", Folder: "call1"}
	if err := db.CreateRecording(ctx, rec); err != nil {
		t.Fatal(err)
	}
	part := &storage.Part{RecordingID: rec.ID, File: "alice mic.ogg", Track: "a", Part: 1, UserID: "@a:x", Kind: "audio", Codec: "opus", Status: storage.PartSaved}
	if err := db.SavePart(ctx, part); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "call1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "call1", "alice mic.ogg"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, part: part, rec: rec, dir: dir, links: NewLinkSigner([]byte("0123456789abcdef0123456789abcdef"))}
	h := Handler(Options{
		DB: db, Dir: dir, WebhookToken: "0123456789abcdef0123",
		Confirm: func(ctx context.Context, bucket, key string, size int64, etag string) (bool, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			call := fmt.Sprintf("%s|%s|%d|%s", bucket, key, size, etag)
			f.seen = append(f.seen, call)
			if f.known == nil || f.known[bucket+"/"+key] {
				f.matched = append(f.matched, call)
				return true, nil
			}
			return false, nil
		},
		Gatherer: prometheus.NewRegistry(),
		Health:   func(context.Context) error { return healthErr },
		Log:      zerolog.Nop(),
		Links:    f.links, LinkExpiry: time.Hour, CommandPrefix: "!",
	})
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestDownload(t *testing.T) {
	f := newFixture(t, nil)
	link := f.links.URL(f.srv.URL, f.part.Token, f.part.File, time.Now().Add(time.Hour))
	resp, body := get(t, link)
	if resp.StatusCode != 200 || body != "0123456789" {
		t.Fatalf("download: %d %q", resp.StatusCode, body)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "attachment") || !strings.Contains(cd, "alice mic.ogg") {
		t.Errorf("Content-Disposition %q", cd)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "audio/ogg" {
		t.Errorf("Content-Type %q", ct)
	}
	resp, body = get(t, link, "Range", "bytes=2-4")
	if resp.StatusCode != http.StatusPartialContent || body != "234" {
		t.Errorf("range: %d %q", resp.StatusCode, body)
	}
	for _, bad := range []string{"/download/short/x.ogg", "/download/AAAAAAAAAAAAAAAAAAAAAA/x.ogg", "/download/../../etc/passwd"} {
		if resp, _ := get(t, f.srv.URL+bad); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", bad, resp.StatusCode)
		}
	}
	f.rec.Status = storage.RecordingExpired
	if err := f.db.UpdateRecording(context.Background(), f.rec); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, link); resp.StatusCode != http.StatusGone {
		t.Errorf("expired recording: %d, want 410", resp.StatusCode)
	}
}

func post(t *testing.T, url, auth, b string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(b))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestWebhook(t *testing.T) {
	f := newFixture(t, nil)
	body := `{"EventName":"s3:ObjectCreated:CompleteMultipartUpload","Key":"rec/calls/call1/a.ogg","Records":[{"eventName":"s3:ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"rec"},"object":{"key":"calls%2Fcall1%2Falice+mic.ogg","size":10,"eTag":"abc-2"}}},{"eventName":"s3:ObjectRemoved:Delete","s3":{"bucket":{"name":"rec"},"object":{"key":"x"}}}]}`
	if c := post(t, f.srv.URL+WebhookPath, "", body); c != http.StatusUnauthorized {
		t.Errorf("no token: %d", c)
	}
	if c := post(t, f.srv.URL+WebhookPath, "Bearer wrong-token-0000000", body); c != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", c)
	}
	if c := post(t, f.srv.URL+WebhookPath+"?token=wrong-token-0000000", "", body); c != http.StatusUnauthorized {
		t.Errorf("wrong token in the query: %d", c)
	}
	if len(f.seen) != 0 {
		t.Fatal("unauthorised events were processed")
	}
	if c := post(t, f.srv.URL+WebhookPath+"?token=0123456789abcdef0123", "", "{not json"); c != http.StatusBadRequest {
		t.Errorf("bad json: %d", c)
	}
	if c := post(t, f.srv.URL+WebhookPath, "Bearer 0123456789abcdef0123", body); c != http.StatusNoContent {
		t.Errorf("good event: %d", c)
	}
	if len(f.seen) != 1 || f.seen[0] != "rec|calls/call1/alice mic.ogg|10|abc-2" {
		t.Errorf("confirmations: %q", f.seen)
	}
}

// TestWebhookShapes posts the bodies S3 stores send (testdata/README.md says where each
// comes from): MinIO's and AWS's URL-encoded keys and bare ETags, versitygw's raw keys,
// quoted ETags and multipart completions without a size, and versitygw's test event.
func TestWebhookShapes(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string // the matched Confirm calls: bucket|key|size|etag
	}{
		{"minio-put.json", []string{"recordings|calls/1/alice mic+1.ogg|10000|adf8abef7464a878c672dbee5b61319c"}},
		// The deletion in the same body is not an upload.
		{"minio-multipart.json", []string{"recordings|calls/1/bob.webm|5242884|b9490a638152a70a80f8ec6afbc9813f-2"}},
		{"aws-put.json", []string{"recordings|calls/1/alice mic+1.ogg|10000|adf8abef7464a878c672dbee5b61319c"}},
		{"versitygw-put.json", []string{"recordings|calls/1/alice mic+1.ogg|10000|adf8abef7464a878c672dbee5b61319c"}},
		{"versitygw-multipart.json", []string{fmt.Sprintf("recordings|calls/1/bob.webm|%d|b9490a638152a70a80f8ec6afbc9813f-2", SizeUnknown)}},
		{"versitygw-test-event.json", nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			f := newFixture(t, nil)
			f.known = map[string]bool{"recordings/calls/1/alice mic+1.ogg": true, "recordings/calls/1/bob.webm": true}
			if c := post(t, f.srv.URL+WebhookPath+"?token=0123456789abcdef0123", "", string(body)); c != http.StatusNoContent {
				t.Fatalf("status %d", c)
			}
			if strings.Join(f.matched, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("matched %q, want %q (all calls %q)", f.matched, tc.want, f.seen)
			}
		})
	}
}

func TestEventKeysAndSize(t *testing.T) {
	for raw, want := range map[string]string{
		"calls%2F1%2Fa+b.ogg": "calls/1/a b.ogg calls%2F1%2Fa+b.ogg", // S3: decoded first
		"calls/1/a b+c.ogg":   "calls/1/a b c.ogg calls/1/a b+c.ogg", // raw (versitygw) second
		"calls/1/50%.ogg":     "calls/1/50%.ogg",                     // does not decode: raw only
		"calls/1/a.ogg":       "calls/1/a.ogg",
	} {
		if got := strings.Join(eventKeys(raw), " "); got != want {
			t.Errorf("eventKeys(%q) = %q, want %q", raw, got, want)
		}
	}
	for _, tc := range []struct {
		size int64
		etag string
		want int64
	}{
		{10, "adf8abef7464a878c672dbee5b61319c", 10},
		{0, "d41d8cd98f00b204e9800998ecf8427e", 0}, // an empty object
		{0, "b9490a638152a70a80f8ec6afbc9813f-2", SizeUnknown},
		{5242884, "b9490a638152a70a80f8ec6afbc9813f-2", 5242884},
	} {
		if got := eventSize(tc.size, tc.etag); got != tc.want {
			t.Errorf("eventSize(%d, %s) = %d, want %d", tc.size, tc.etag, got, tc.want)
		}
	}
}

func TestHealthAndMetrics(t *testing.T) {
	f := newFixture(t, nil)
	if resp, body := get(t, f.srv.URL+"/healthz"); resp.StatusCode != 200 || !strings.Contains(body, "ok") {
		t.Errorf("healthz: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, f.srv.URL+"/metrics"); resp.StatusCode != 200 {
		t.Errorf("metrics: %d", resp.StatusCode)
	}
	bad := newFixture(t, errors.New("sync failing"))
	if resp, body := get(t, bad.srv.URL+"/healthz"); resp.StatusCode != 503 || !strings.Contains(body, "sync failing") {
		t.Errorf("unhealthy: %d %s", resp.StatusCode, body)
	}
}

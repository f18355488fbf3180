package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

type fixture struct {
	srv   *httptest.Server
	db    *storage.DB
	part  *storage.Part
	rec   *storage.Recording
	seen  []string
	dir   string
	token string
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
	part := &storage.Part{RecordingID: rec.ID, File: "alice mic.ogg", Track: "a", Part: 1, UserID: "@a:x", Kind: "audio", Codec: "opus", Status: storage.StatusSaved}
	if err := db.SavePart(ctx, part); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "call1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "call1", "alice mic.ogg"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, part: part, rec: rec, dir: dir}
	h := Handler(Options{
		DB: db, Dir: dir, WebhookToken: "0123456789abcdef0123",
		Confirm: func(ctx context.Context, bucket, key string, size int64, etag string) (bool, error) {
			f.seen = append(f.seen, bucket+"|"+key+"|"+etag)
			return true, nil
		},
		Gatherer: prometheus.NewRegistry(),
		Health:   func(context.Context) error { return healthErr },
		Log:      zerolog.Nop(),
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
	link := DownloadURL(f.srv.URL, f.part.Token, f.part.File)
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
	f.rec.Status = storage.StatusExpired
	if err := f.db.UpdateRecording(context.Background(), f.rec); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, link); resp.StatusCode != http.StatusGone {
		t.Errorf("expired recording: %d, want 410", resp.StatusCode)
	}
}

func TestWebhook(t *testing.T) {
	f := newFixture(t, nil)
	body := `{"EventName":"s3:ObjectCreated:CompleteMultipartUpload","Key":"rec/calls/call1/a.ogg","Records":[{"eventName":"s3:ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"rec"},"object":{"key":"calls%2Fcall1%2Falice+mic.ogg","size":10,"eTag":"abc-2"}}},{"eventName":"s3:ObjectRemoved:Delete","s3":{"bucket":{"name":"rec"},"object":{"key":"x"}}}]}`
	post := func(url, auth, b string) int {
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
	if c := post(f.srv.URL+WebhookPath, "", body); c != http.StatusUnauthorized {
		t.Errorf("no token: %d", c)
	}
	if c := post(f.srv.URL+WebhookPath, "Bearer wrong-token-0000000", body); c != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", c)
	}
	if len(f.seen) != 0 {
		t.Fatal("unauthorised events were processed")
	}
	if c := post(f.srv.URL+WebhookPath+"?token=0123456789abcdef0123", "", "{not json"); c != http.StatusBadRequest {
		t.Errorf("bad json: %d", c)
	}
	if c := post(f.srv.URL+WebhookPath, "Bearer 0123456789abcdef0123", body); c != http.StatusNoContent {
		t.Errorf("good event: %d", c)
	}
	if len(f.seen) != 1 || f.seen[0] != "rec|calls/call1/alice mic.ogg|abc-2" {
		t.Errorf("confirmations: %q", f.seen)
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

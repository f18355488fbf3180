package download

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

type fixture struct {
	srv   *httptest.Server
	db    *storage.DB
	part  *storage.Part
	rec   *storage.Recording
	dir   string
	links *Signer
}

func newFixture(t *testing.T) *fixture {
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
	f := &fixture{db: db, part: part, rec: rec, dir: dir, links: NewSigner([]byte("0123456789abcdef0123456789abcdef"))}
	mux := http.NewServeMux()
	mux.Handle(Pattern, Handler(Options{
		DB: db, Dir: dir, Log: zerolog.Nop(),
		Links: f.links, LinkExpiry: time.Hour, CommandPrefix: "!",
	}))
	f.srv = httptest.NewServer(mux)
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
	f := newFixture(t)
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

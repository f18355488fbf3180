package download

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Download links expire: signed ones at their time, the unsigned ones posted before links
// were signed a link lifetime after their recording ended; a forged signature is unknown.
func TestLinkExpiry(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	signed := f.links.URL(f.srv.URL, f.part.Token, f.part.File, now.Add(time.Minute))
	if resp, body := get(t, signed); resp.StatusCode != http.StatusOK || body != "0123456789" {
		t.Fatalf("valid signed link: %d %q", resp.StatusCode, body)
	}
	expired := f.links.URL(f.srv.URL, f.part.Token, f.part.File, now.Add(-time.Second))
	if resp, body := get(t, expired); resp.StatusCode != http.StatusGone || !strings.Contains(body, "!recordings "+f.rec.ID) {
		t.Errorf("expired signed link: %d %q", resp.StatusCode, body)
	}
	// A later expiry with the old signature, or another key's signature, is forged.
	tampered := strings.Replace(signed, "exp=", "exp=9", 1)
	if resp, _ := get(t, tampered); resp.StatusCode != http.StatusNotFound {
		t.Errorf("tampered expiry: %d, want 404", resp.StatusCode)
	}
	other := NewSigner([]byte("another key, another key, another")).URL(f.srv.URL, f.part.Token, f.part.File, now.Add(time.Hour))
	if resp, _ := get(t, other); resp.StatusCode != http.StatusNotFound {
		t.Errorf("other key: %d, want 404", resp.StatusCode)
	}
	// The same signature does not open another file's token.
	if resp, _ := get(t, strings.Replace(signed, f.part.Token, "AAAAAAAAAAAAAAAAAAAAAA", 1)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("signature moved to another token: %d, want 404", resp.StatusCode)
	}

	legacy := URL(f.srv.URL, f.part.Token, f.part.File)
	if resp, _ := get(t, legacy); resp.StatusCode != http.StatusGone {
		t.Errorf("unsigned link of a recording that has not ended: %d, want 410", resp.StatusCode)
	}
	f.rec.EndedAt = now.Add(-59 * time.Minute)
	if err := f.db.UpdateRecording(context.Background(), f.rec); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, legacy); resp.StatusCode != http.StatusOK {
		t.Errorf("unsigned link within its lifetime: %d, want 200", resp.StatusCode)
	}
	f.rec.EndedAt = now.Add(-61 * time.Minute)
	if err := f.db.UpdateRecording(context.Background(), f.rec); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, legacy); resp.StatusCode != http.StatusGone {
		t.Errorf("unsigned link older than the link lifetime: %d, want 410", resp.StatusCode)
	}
	if resp, _ := get(t, signed); resp.StatusCode != http.StatusOK {
		t.Errorf("a valid signed link of the same file: %d", resp.StatusCode)
	}
}

// The link key is made once and kept: links stay valid across restarts.
func TestLoadSignerKeepsTheKey(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	if a.URL("https://x", "tok", "f.ogg", exp) != b.URL("https://x", "tok", "f.ogg", exp) {
		t.Error("a second start signs with another key")
	}
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(dir); err == nil {
		t.Error("a broken key file was accepted")
	}
}

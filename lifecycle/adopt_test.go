package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// manifestPuts is an S3 endpoint that takes every PUT and keeps the bodies of those of
// manifest copies.
type manifestPuts struct {
	mu     sync.Mutex
	bodies [][]byte
	down   bool // answer every request with 503
}

func (p *manifestPuts) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		_ = r.Body.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	}
	if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/"+recorder.ManifestFile) {
		p.bodies = append(p.bodies, body)
	}
	h := http.Header{}
	h.Set("ETag", `"0123456789abcdef0123456789abcdef"`)
	return &http.Response{StatusCode: http.StatusOK, Header: h, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

func (p *manifestPuts) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// take returns the manifest copies stored since the last call.
func (p *manifestPuts) take() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.bodies
	p.bodies = nil
	return out
}

// TestManifestCopiesStoreOnlyChanges: snapshot stores a live recording's manifest when
// its bytes changed since the last copy, not every time; a copy the store failed to take
// is stored at the next snapshot; a recording that stops being live here is forgotten, so
// it is stored again if it comes back.
func TestManifestCopiesStoreOnlyChanges(t *testing.T) {
	e := newEnv(t, nil)
	puts := &manifestPuts{}
	var err error
	e.lc.s3, err = s3store.New(s3store.Config{Endpoint: "s3.test", Bucket: "recordings", Region: "us-east-1", PathStyle: true,
		AccessKey: "a", SecretKey: "s", Transport: puts})
	if err != nil {
		t.Fatal(err)
	}
	f := newFleet(e.lc, "me")
	ctx := context.Background()
	s := e.start(t, recorder.KindMesh)
	stored := func(step string, s *recorder.Session) {
		t.Helper()
		f.snapshot(ctx)
		got := puts.take()
		if s == nil {
			if len(got) != 0 {
				t.Fatalf("%s: stored %d unchanged manifest copies", step, len(got))
			}
			return
		}
		want, _ := json.MarshalIndent(s.Manifest(), "", "  ")
		if len(got) != 1 || !bytes.Contains(got[0], want) { // the body may be aws-chunked around the JSON
			t.Fatalf("%s: stored %d copies, want the manifest as it is now, once", step, len(got))
		}
	}
	stored("the first snapshot", s)
	stored("a snapshot without a change", nil)
	s.AddMarker("@alice:x", "a marker", e.clock().Add(time.Second))
	stored("a snapshot after a marker", s)
	stored("the next snapshot", nil)

	// The store fails once: the change is stored at the next snapshot.
	s.AddMarker("@alice:x", "another", e.clock().Add(2*time.Second))
	puts.setDown(true)
	f.snapshot(ctx)
	puts.setDown(false)
	stored("a snapshot after a failed one", s)

	// No longer live here (the copies forget it), then live again: stored again.
	e.lc.mu.Lock()
	folder := filepath.Base(s.Folder())
	lr := e.lc.live[folder]
	delete(e.lc.live, folder)
	e.lc.mu.Unlock()
	if lr == nil {
		t.Fatalf("the recording is not live under %s", folder)
	}
	stored("a snapshot without the recording", nil)
	e.lc.mu.Lock()
	e.lc.live[folder] = lr
	e.lc.mu.Unlock()
	stored("a snapshot with the recording back", s)
}

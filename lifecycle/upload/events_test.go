package upload

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

const eventToken = "0123456789abcdef0123"

// eventsFixture serves Events with a Confirm that records its calls.
type eventsFixture struct {
	srv *httptest.Server
	mu  sync.Mutex
	// known, when set, are the bucket/key pairs Confirm matches (else it matches all).
	known   map[string]bool
	seen    []string // every Confirm call: bucket|key|size|etag
	matched []string // the calls that matched
}

func newEventsFixture(t *testing.T) *eventsFixture {
	t.Helper()
	f := &eventsFixture{}
	f.srv = httptest.NewServer(Events(EventOptions{
		Token: eventToken, Log: zerolog.Nop(),
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
	}))
	t.Cleanup(f.srv.Close)
	return f
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

func TestEventsWebhook(t *testing.T) {
	f := newEventsFixture(t)
	body := `{"EventName":"s3:ObjectCreated:CompleteMultipartUpload","Key":"rec/calls/call1/a.ogg","Records":[{"eventName":"s3:ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"rec"},"object":{"key":"calls%2Fcall1%2Falice+mic.ogg","size":10,"eTag":"abc-2"}}},{"eventName":"s3:ObjectRemoved:Delete","s3":{"bucket":{"name":"rec"},"object":{"key":"x"}}}]}`
	if c := post(t, f.srv.URL+EventsPath, "", body); c != http.StatusUnauthorized {
		t.Errorf("no token: %d", c)
	}
	if c := post(t, f.srv.URL+EventsPath, "Bearer wrong-token-0000000", body); c != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", c)
	}
	if c := post(t, f.srv.URL+EventsPath+"?token=wrong-token-0000000", "", body); c != http.StatusUnauthorized {
		t.Errorf("wrong token in the query: %d", c)
	}
	if len(f.seen) != 0 {
		t.Fatal("unauthorised events were processed")
	}
	if c := post(t, f.srv.URL+EventsPath+"?token="+eventToken, "", "{not json"); c != http.StatusBadRequest {
		t.Errorf("bad json: %d", c)
	}
	if c := post(t, f.srv.URL+EventsPath, "Bearer "+eventToken, body); c != http.StatusNoContent {
		t.Errorf("good event: %d", c)
	}
	if len(f.seen) != 1 || f.seen[0] != "rec|calls/call1/alice mic.ogg|10|abc-2" {
		t.Errorf("confirmations: %q", f.seen)
	}
	req, _ := http.NewRequest(http.MethodHead, f.srv.URL+EventsPath, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD (MinIO's check of a webhook target): %v %v", resp, err)
	}
}

// TestEventsShapes posts the bodies S3 stores send (testdata/README.md says where each
// comes from): MinIO's and AWS's URL-encoded keys and bare ETags, versitygw's raw keys,
// quoted ETags and multipart completions without a size, and versitygw's test event.
func TestEventsShapes(t *testing.T) {
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
			f := newEventsFixture(t)
			f.known = map[string]bool{"recordings/calls/1/alice mic+1.ogg": true, "recordings/calls/1/bob.webm": true}
			if c := post(t, f.srv.URL+EventsPath+"?token="+eventToken, "", string(body)); c != http.StatusNoContent {
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

// /s3/events answers before reading a body it would refuse: no token, no length, too long.
func TestEventPrecheckReadsNoBody(t *testing.T) {
	f := newEventsFixture(t)
	addr := strings.TrimPrefix(f.srv.URL, "http://")
	for name, req := range map[string]string{
		"chunked":  "POST /s3/events?token=" + eventToken + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"no token": "POST /s3/events HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n",
		"too long": "POST /s3/events?token=" + eventToken + " HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = io.WriteString(c, req) // and no body: a handler that reads it waits
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer without the body: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Errorf("status %d, want a refusal", resp.StatusCode)
			}
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) != 0 {
		t.Errorf("refused events were processed: %v", f.seen)
	}
}

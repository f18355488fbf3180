package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/devs3"
	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
	"github.com/matrix-recorder/matrix-recorder/internal/testclient"
	"github.com/matrix-recorder/matrix-recorder/internal/testenv"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// s3Env is an S3 server (versitygw, internal/devs3) with a bucket for one test, and the
// port the bot's HTTP server will use (the server's event notifications go there).
type s3Env struct {
	srv      *devs3.Server
	bucket   string
	httpPort int
	token    string
}

// startS3 starts the S3 server with a bucket. With webhook, it notifies the bot's future
// HTTP port of new objects: the server posts a test event there when it starts and does
// not start if nothing answers, so a placeholder answers until the bot takes the port
// over. (A Restart needs the bot's server up then.)
func startS3(t *testing.T, webhook bool) *s3Env {
	t.Helper()
	testenv.RequireIntegration(t)
	ctx := timeout(t, 2*time.Minute)
	port, err := devtools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e := &s3Env{bucket: "recordings", httpPort: port, token: "webhook-" + uniq("tok") + "-0123456789"}
	log := testLogger(t).With().Str("side", "s3").Logger()
	opts := devs3.Options{Logger: &log}
	var placeholder *http.Server
	if webhook {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		placeholder = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
		go func() { _ = placeholder.Serve(ln) }()
		t.Cleanup(func() { _ = placeholder.Close() })
		opts.Webhook = fmt.Sprintf("http://127.0.0.1:%d/s3/events?token=%s", port, e.token)
	}
	e.srv, err = devs3.Start(ctx, opts)
	if placeholder != nil {
		_ = placeholder.Close() // the port is free for the bot's server now
	}
	if err != nil {
		testenv.SkipOrFail(t, "S3 server: %v", err)
	}
	t.Cleanup(func() { _ = e.srv.Stop() })
	testenv.LogOnFailure(t, "versitygw", func() string { return e.srv.LogTail(4000) })
	if err := e.srv.CreateBucket(ctx, e.bucket); err != nil {
		t.Fatal(err)
	}
	return e
}

// apply points a bot config at the store and turns on the HTTP server.
func (e *s3Env) apply(cfg *config.Config) {
	cfg.Storage.S3 = config.S3{
		Endpoint: e.srv.Endpoint(), Bucket: e.bucket, Region: devs3.Region, Prefix: "calls",
		AccessKey: e.srv.AccessKey(), SecretKey: e.srv.SecretKey(), PathStyle: true, TLS: false,
		PartSize: 5 << 20, PresignExpiry: config.Duration(time.Hour),
	}
	cfg.HTTP = config.HTTP{Listen: fmt.Sprintf("127.0.0.1:%d", e.httpPort), PublicURL: fmt.Sprintf("http://127.0.0.1:%d", e.httpPort), WebhookToken: e.token, Metrics: true}
}

func (e *s3Env) keys(t *testing.T, prefix string) []string {
	t.Helper()
	c, err := e.srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for o := range c.ListObjects(context.Background(), e.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s: %v", prefix, o.Err)
		}
		out = append(out, o.Key)
	}
	return out
}

var urlPattern = regexp.MustCompile(`https?://\S+`)

// links returns the URLs in a notice.
func links(body string) []string { return urlPattern.FindAllString(body, -1) }

// fetch downloads a URL and returns the SHA-256 of the body.
func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, hex.EncodeToString(h.Sum(nil))
}

// stateDB opens the bot's state database next to it (SQLite allows a second reader).
func stateDB(t *testing.T, cfg config.Config) *storage.DB {
	t.Helper()
	db, err := storage.Open(context.Background(), filepath.Join(cfg.DataDir, storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

var recordingID = regexp.MustCompile(`\(recording ([a-z0-9]{8})\)`)

// waitNotice waits for a notice containing want.
func waitNotice(t *testing.T, c *caller.Client, room id.RoomID, since time.Time, d time.Duration, want ...string) string {
	t.Helper()
	return waitView(t, "notice", func() []testclient.Message { return c.Notices(room) }, since, d, want...)
}

// waitRecording polls the state database until fn accepts the recording.
func waitRecording(t *testing.T, db *storage.DB, recID string, d time.Duration, what string, fn func(*storage.Recording) bool) *storage.Recording {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, err := db.Recording(context.Background(), recID)
		if err == nil && fn(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("recording %s: %s: last state %+v (%v)", recID, what, r, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Package devs3 runs a throwaway S3 server on 127.0.0.1 for the integration tests:
// versitygw (Apache-2.0) with its posix backend, built by internal/devtools.
package devs3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
)

// Region is the region the server reports and buckets are created in.
const Region = "us-east-1"

// healthPath is the server's health check; the underscore keeps it apart from bucket
// names (path-style requests put the bucket first).
const healthPath = "/_health"

// eventFilter limits the webhook to object creation: the product only reads those.
const eventFilter = `{"s3:ObjectCreated:*": true}`

// Options configure Start.
type Options struct {
	// Dir holds the data and the log. Empty means a new temporary folder,
	// removed by Stop.
	Dir string
	// Webhook, when set, receives S3 event notifications (JSON, {"Records": [...]}) for
	// objects created in any bucket, e.g. "http://127.0.0.1:9999/s3/events?token=...".
	// versitygw posts a test event there when it starts and does not start when the
	// connection is refused: the receiver must be up before Start and Restart.
	Webhook string
	// Logger receives progress messages (default: the context's logger).
	Logger *zerolog.Logger
	// Tools passes options to devtools.Ensure (e.g. a cache root).
	Tools []devtools.Option
}

// Server is a running versitygw.
type Server struct {
	dir       string
	removeDir func() error // devtools.ServerDir
	port      int
	accessKey string
	secretKey string
	webhook   string
	proc      *devtools.Process
	log       zerolog.Logger
	bin       string
	// samePort makes start reuse port (Restart).
	samePort bool
}

// Start starts versitygw on a free loopback port with a generated root user, returning
// once its health check answers. It is stopped by Stop or when ctx ends.
func Start(ctx context.Context, opts Options) (*Server, error) {
	log := zerolog.Ctx(ctx).With().Str("component", "devs3").Logger()
	if opts.Logger != nil {
		log = opts.Logger.With().Str("component", "devs3").Logger()
	}
	if opts.Webhook != "" && !validWebhookURL(opts.Webhook) {
		return nil, fmt.Errorf("webhook %q is not an http(s) URL", opts.Webhook)
	}
	bin, err := devtools.Binary(ctx, devtools.VersityGW, "versitygw",
		append([]devtools.Option{devtools.WithLogger(log)}, opts.Tools...)...)
	if err != nil {
		return nil, fmt.Errorf("getting the versitygw binary: %w", err)
	}
	s := &Server{
		log: log, webhook: opts.Webhook,
		accessKey: "devs3-" + randomHex(6), secretKey: randomHex(20),
	}
	if s.dir, s.removeDir, err = devtools.ServerDir(opts.Dir, "devs3-"); err != nil {
		return nil, fmt.Errorf("creating the S3 server's folder: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "data"), 0o755); err != nil {
		return nil, errors.Join(fmt.Errorf("creating the S3 server's folder: %w", err), s.removeDir())
	}
	if err := os.WriteFile(filepath.Join(s.dir, "event-filter.json"), []byte(eventFilter), 0o644); err != nil {
		return nil, errors.Join(fmt.Errorf("writing the S3 server's event filter: %w", err), s.removeDir())
	}
	s.bin = bin
	lastErr := devtools.StartOnFreePorts(log, func() error { return s.start(ctx) }, func() *devtools.Process { return s.proc })
	if lastErr == nil {
		return s, nil
	}
	return nil, errors.Join(lastErr, s.removeDir())
}

func (s *Server) start(ctx context.Context) error {
	var err error
	if !s.samePort {
		if s.port, err = devtools.FreePort(); err != nil {
			return err
		}
	}
	// Keys and the webhook URL (it carries a token) go in the environment, not on the
	// command line that ps shows.
	env := []string{
		"ROOT_ACCESS_KEY_ID=" + s.accessKey,
		"ROOT_SECRET_ACCESS_KEY=" + s.secretKey,
		// Keep anything the server writes out of the user's home.
		"HOME=" + s.dir,
	}
	if s.webhook != "" {
		env = append(env,
			"VGW_EVENT_WEBHOOK_URL="+s.webhook,
			"VGW_EVENT_FILTER="+filepath.Join(s.dir, "event-filter.json"),
		)
	}
	s.proc, err = devtools.StartProcess(ctx, devtools.ProcessSpec{
		Name: "versitygw",
		Path: s.bin,
		Args: []string{
			"--port", s.Endpoint(),
			"--region", Region,
			"--health", healthPath,
			"--quiet",
			"posix", filepath.Join(s.dir, "data"),
		},
		Env:     env,
		Dir:     s.dir,
		LogPath: filepath.Join(s.dir, "versitygw.log"),
	})
	if err != nil {
		return err
	}
	if err := s.proc.WaitHTTP(ctx, s.URL()+healthPath, 60*time.Second); err != nil {
		return errors.Join(err, s.proc.Stop())
	}
	s.log.Info().Str("endpoint", s.Endpoint()).Bool("webhook", s.webhook != "").Str("log", s.proc.LogPath()).
		Msg("S3 server (versitygw) ready")
	return nil
}

// Endpoint returns host:port, as minio-go and most S3 configs want it.
func (s *Server) Endpoint() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL returns http://host:port.
func (s *Server) URL() string { return "http://" + s.Endpoint() }

// AccessKey returns the root user's access key.
func (s *Server) AccessKey() string { return s.accessKey }

// SecretKey returns the root user's secret key.
func (s *Server) SecretKey() string { return s.secretKey }

// LogPath returns the file holding the server's log.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "versitygw.log") }

// LogTail returns at most n bytes from the end of the log.
func (s *Server) LogTail(n int) string { return devtools.FileTail(s.LogPath(), n) }

// Client returns a minio-go client for the root user (path style, no TLS).
func (s *Server) Client() (*minio.Client, error) {
	c, err := minio.New(s.Endpoint(), &minio.Options{
		Creds:        credentials.NewStaticV4(s.accessKey, s.secretKey, ""),
		Secure:       false,
		Region:       Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fmt.Errorf("creating S3 client for %s: %w", s.Endpoint(), err)
	}
	return c, nil
}

// CreateBucket creates a bucket. With Options.Webhook set, its new objects are announced
// there (versitygw notifies one endpoint of every bucket's events).
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region}); err != nil {
		return fmt.Errorf("creating bucket %s: %w", name, err)
	}
	return nil
}

// Stop kills the server and, if Start created the folder, removes it.
func (s *Server) Stop() error {
	var err error
	if s.proc != nil { // nil after Halt
		err = s.proc.Stop()
	}
	return errors.Join(err, s.removeDir())
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (it crashes the program instead)
	return hex.EncodeToString(b)
}

// validWebhookURL reports whether u is an absolute http(s) URL, for an error that is
// clearer than the server's.
func validWebhookURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != ""
}

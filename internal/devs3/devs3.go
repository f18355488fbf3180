// Package devs3 runs a throwaway MinIO S3 server on 127.0.0.1 for the
// integration tests and the demo mode.
package devs3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/notification"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
)

// Region is the region MinIO reports and buckets are created in.
const Region = "us-east-1"

// Options configure Start.
type Options struct {
	// Dir holds the data and the log. Empty means a new temporary folder,
	// removed by Stop.
	Dir string
	// WebhookEndpoints are bucket notification targets, by ID (letters,
	// digits and underscores), e.g. {"REC": "http://127.0.0.1:9999/events"}.
	// MinIO only knows targets configured at start, and checks that they
	// answer then: start the receivers first. AddWebhook attaches one to a
	// bucket.
	WebhookEndpoints map[string]string
	// Logger receives progress messages (default: the context's logger).
	Logger *zerolog.Logger
	// Tools passes options to devtools.Ensure (e.g. a cache root).
	Tools []devtools.Option
}

// Server is a running MinIO.
type Server struct {
	dir       string
	ownDir    bool
	port      int
	accessKey string
	secretKey string
	webhooks  map[string]string
	proc      *devtools.Process
	log       zerolog.Logger
	bin       string
	// samePort makes start reuse port (Restart).
	samePort bool
}

var webhookID = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// Start starts MinIO on free loopback ports with a generated root user,
// returning once /minio/health/ready answers. It is stopped by Stop or when
// ctx ends.
func Start(ctx context.Context, opts Options) (*Server, error) {
	log := zerolog.Ctx(ctx).With().Str("component", "devs3").Logger()
	if opts.Logger != nil {
		log = opts.Logger.With().Str("component", "devs3").Logger()
	}
	for id, u := range opts.WebhookEndpoints {
		if !webhookID.MatchString(id) {
			return nil, fmt.Errorf("webhook id %q: use letters, digits and underscores", id)
		}
		if !validWebhookURL(u) {
			return nil, fmt.Errorf("webhook %s: endpoint %q is not an http(s) URL", id, u)
		}
	}
	bin, err := devtools.Binary(ctx, devtools.MinIO, "minio",
		append([]devtools.Option{devtools.WithLogger(log)}, opts.Tools...)...)
	if err != nil {
		return nil, fmt.Errorf("getting minio binary: %w", err)
	}
	s := &Server{
		dir: opts.Dir, log: log, webhooks: opts.WebhookEndpoints,
		accessKey: "devs3-" + randomHex(6), secretKey: randomHex(20),
	}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "devs3-"); err != nil {
			return nil, fmt.Errorf("creating minio dir: %w", err)
		}
		s.ownDir = true
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("creating minio dir: %w", err)
	}
	s.bin = bin
	lastErr := devtools.StartOnFreePorts(log, func() error { return s.start(ctx, bin) }, func() *devtools.Process { return s.proc })
	if lastErr == nil {
		return s, nil
	}
	if s.ownDir {
		lastErr = errors.Join(lastErr, os.RemoveAll(s.dir))
	}
	return nil, lastErr
}

func (s *Server) start(ctx context.Context, bin string) error {
	var err error
	if !s.samePort {
		if s.port, err = devtools.FreePort(); err != nil {
			return err
		}
	}
	consolePort, err := devtools.FreePort()
	if err != nil {
		return err
	}
	env := []string{
		"MINIO_ROOT_USER=" + s.accessKey,
		"MINIO_ROOT_PASSWORD=" + s.secretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_REGION=" + Region,
		// No call home, no anonymous telemetry.
		"MINIO_CALLHOME_ENABLE=off",
		// Keep MinIO's own config out of the user's home.
		"HOME=" + s.dir,
	}
	ids := make([]string, 0, len(s.webhooks))
	for id := range s.webhooks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		env = append(env,
			"MINIO_NOTIFY_WEBHOOK_ENABLE_"+id+"=on",
			"MINIO_NOTIFY_WEBHOOK_ENDPOINT_"+id+"="+s.webhooks[id],
		)
	}
	s.proc, err = devtools.StartProcess(ctx, devtools.ProcessSpec{
		Name: "minio",
		Path: bin,
		Args: []string{
			"server", filepath.Join(s.dir, "data"),
			"--address", "127.0.0.1:" + strconv.Itoa(s.port),
			"--console-address", "127.0.0.1:" + strconv.Itoa(consolePort),
			"--certs-dir", filepath.Join(s.dir, "certs"),
			"--quiet", "--anonymous",
		},
		Env:     env,
		Dir:     s.dir,
		LogPath: filepath.Join(s.dir, "minio.log"),
	})
	if err != nil {
		return err
	}
	if err := s.proc.WaitHTTP(ctx, s.URL()+"/minio/health/ready", 60*time.Second); err != nil {
		return errors.Join(err, s.proc.Stop())
	}
	s.log.Info().Str("endpoint", s.Endpoint()).Strs("webhooks", ids).Str("log", s.proc.LogPath()).
		Msg("minio ready")
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

// Dir returns the server's folder.
func (s *Server) Dir() string { return s.dir }

// LogPath returns the file holding MinIO's log.
func (s *Server) LogPath() string { return s.proc.LogPath() }

// LogTail returns at most n bytes from the end of the log.
func (s *Server) LogTail(n int) string { return s.proc.LogTail(n) }

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

// CreateBucket creates a bucket.
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

// AddWebhook makes the bucket notify the webhook endpoint with the given ID
// (one of Options.WebhookEndpoints) of events, by default s3:ObjectCreated:*.
// Events arrive as MinIO's JSON event records ({"Records": [...]}), usually
// within a second; the object key in them is URL-encoded ("a%2Fb.ogg").
func (s *Server) AddWebhook(ctx context.Context, bucket, id string, events ...notification.EventType) error {
	if _, ok := s.webhooks[id]; !ok {
		return fmt.Errorf("webhook %q was not configured at start (Options.WebhookEndpoints)", id)
	}
	if len(events) == 0 {
		events = []notification.EventType{notification.ObjectCreatedAll}
	}
	c, err := s.Client()
	if err != nil {
		return err
	}
	cfg, err := c.GetBucketNotification(ctx, bucket)
	if err != nil {
		return fmt.Errorf("reading notification config of bucket %s: %w", bucket, err)
	}
	arn := notification.NewArn("minio", "sqs", "", id, "webhook")
	q := notification.NewConfig(arn)
	for _, e := range events {
		q.AddEvents(e)
	}
	if !cfg.AddQueue(q) {
		return fmt.Errorf("bucket %s already notifies %s", bucket, arn)
	}
	// MinIO sets its notification targets up after it answers requests; until the target
	// is there it refuses the ARN ("A specified destination ARN does not exist").
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := c.SetBucketNotification(ctx, bucket, cfg)
		if err == nil {
			return nil
		}
		notYet := strings.Contains(minio.ToErrorResponse(err).Message, "destination ARN does not exist")
		if !notYet || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("setting notification of bucket %s to %s: %w", bucket, arn, err)
		}
		s.log.Debug().Err(err).Msg("Webhook target not ready yet; retrying")
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// Stop kills MinIO and, if Start created the folder, removes it.
func (s *Server) Stop() error {
	var err error
	if s.proc != nil { // nil after Halt
		err = s.proc.Stop()
	}
	if s.ownDir {
		err = errors.Join(err, os.RemoveAll(s.dir))
	}
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (it crashes the program instead)
	return hex.EncodeToString(b)
}

// validWebhookURL reports whether u looks like an http(s) URL, for errors
// that are clearer than MinIO's.
func validWebhookURL(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

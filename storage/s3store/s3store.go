// Package s3store is the recorder's view of an S3-compatible object store (AWS S3, MinIO,
// Garage, Ceph, ...): multipart uploads part by part, checks, presigned links, deletion.
package s3store

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Config says where objects go.
type Config struct {
	// Endpoint is host[:port], without scheme.
	Endpoint  string
	Bucket    string
	Region    string
	Prefix    string
	AccessKey string
	SecretKey string
	// PathStyle addresses the bucket in the path (MinIO and most self-hosted stores)
	// instead of as a subdomain.
	PathStyle bool
	// TLS uses https.
	TLS bool
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
}

// Store talks to one bucket.
type Store struct {
	cfg    Config
	client *minio.Client
	core   minio.Core
}

// New creates the client; it does not contact the store.
func New(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3: endpoint and bucket are required")
	}
	if strings.Contains(cfg.Endpoint, "://") {
		return nil, fmt.Errorf("s3: endpoint %q must be host[:port] without a scheme (tls chooses https)", cfg.Endpoint)
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       cfg.TLS,
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    cfg.Transport,
		// Retries are ours (with backoff that watches the context and is persisted).
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", cfg.Endpoint, err)
	}
	cfg.Prefix = cleanPrefix(cfg.Prefix)
	return &Store{cfg: cfg, client: c, core: minio.Core{Client: c}}, nil
}

func cleanPrefix(p string) string {
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

// Bucket is the bucket's name.
func (s *Store) Bucket() string { return s.cfg.Bucket }

// Key is the object key of a file in a call folder: the folder layout under the prefix.
func (s *Store) Key(folder, file string) string {
	return s.cfg.Prefix + path.Base("/"+folder) + "/" + path.Base("/"+file)
}

// FolderPrefix is the key prefix of a call folder (ends in "/").
func (s *Store) FolderPrefix(folder string) string { return s.cfg.Prefix + path.Base("/"+folder) + "/" }

// Check verifies that the bucket exists and the credentials work.
func (s *Store) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("s3: checking bucket %s at %s: %w", s.cfg.Bucket, s.cfg.Endpoint, err)
	}
	if !ok {
		return fmt.Errorf("s3: bucket %s does not exist at %s", s.cfg.Bucket, s.cfg.Endpoint)
	}
	return nil
}

// ContentType guesses the type of a recording file from its name.
func ContentType(name string) string {
	switch strings.ToLower(path.Ext(name)) {
	case ".ogg", ".opus":
		return "audio/ogg"
	case ".webm":
		return "video/webm"
	case ".mkv":
		return "video/x-matroska"
	case ".json":
		return "application/json"
	default:
		return "application/octet-stream"
	}
}

// NewMultipart opens a multipart upload.
func (s *Store) NewMultipart(ctx context.Context, key string) (string, error) {
	id, err := s.core.NewMultipartUpload(ctx, s.cfg.Bucket, key, minio.PutObjectOptions{ContentType: ContentType(key)})
	if err != nil {
		return "", fmt.Errorf("s3: start upload of %s: %w", key, err)
	}
	return id, nil
}

// PutPart sends one part (number from 1); the store checks it against md5.
func (s *Store) PutPart(ctx context.Context, key, uploadID string, number int, data []byte, md5sum []byte) (string, error) {
	p, err := s.core.PutObjectPart(ctx, s.cfg.Bucket, key, uploadID, number, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectPartOptions{Md5Base64: base64.StdEncoding.EncodeToString(md5sum)})
	if err != nil {
		return "", fmt.Errorf("s3: upload part %d of %s: %w", number, key, err)
	}
	return strings.Trim(p.ETag, `"`), nil
}

// Part is a sent part for Complete.
type Part struct {
	Number int
	ETag   string
}

// Complete completes a multipart upload and returns the object's ETag.
func (s *Store) Complete(ctx context.Context, key, uploadID string, parts []Part) (string, error) {
	cp := make([]minio.CompletePart, len(parts))
	for i, p := range parts {
		cp[i] = minio.CompletePart{PartNumber: p.Number, ETag: p.ETag}
	}
	info, err := s.core.CompleteMultipartUpload(ctx, s.cfg.Bucket, key, uploadID, cp, minio.PutObjectOptions{})
	if err != nil {
		return "", fmt.Errorf("s3: complete upload of %s: %w", key, err)
	}
	return strings.Trim(info.ETag, `"`), nil
}

// Abort abandons a multipart upload.
func (s *Store) Abort(ctx context.Context, key, uploadID string) error {
	if err := s.core.AbortMultipartUpload(ctx, s.cfg.Bucket, key, uploadID); err != nil && !IsNoSuchUpload(err) {
		return fmt.Errorf("s3: abort upload of %s: %w", key, err)
	}
	return nil
}

// Put uploads a small object in one request.
func (s *Store) Put(ctx context.Context, key string, data []byte) (string, error) {
	sum := md5.Sum(data)
	info, err := s.core.PutObject(ctx, s.cfg.Bucket, key, bytes.NewReader(data), int64(len(data)),
		base64.StdEncoding.EncodeToString(sum[:]), "", minio.PutObjectOptions{ContentType: ContentType(key)})
	if err != nil {
		return "", fmt.Errorf("s3: upload %s: %w", key, err)
	}
	return strings.Trim(info.ETag, `"`), nil
}

// Get downloads a small object (at most max bytes).
func (s *Store) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("s3: download %s: %w", key, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(io.LimitReader(obj, max+1))
	if err != nil {
		return nil, fmt.Errorf("s3: download %s: %w", key, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("s3: %s is larger than %d bytes", key, max)
	}
	return data, nil
}

// IsNotFound reports whether err says the object does not exist.
func IsNotFound(err error) bool {
	var er minio.ErrorResponse
	return errors.As(err, &er) && (er.Code == "NoSuchKey" || er.StatusCode == 404)
}

// Object is what HEAD says about an object.
type Object struct {
	Size int64
	ETag string
}

// Head reads an object's size and ETag.
func (s *Store) Head(ctx context.Context, key string) (Object, error) {
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Object{}, fmt.Errorf("s3: check %s: %w", key, err)
	}
	return Object{Size: info.Size, ETag: strings.Trim(info.ETag, `"`)}, nil
}

// Presign returns a GET link valid for expiry that downloads the object under filename.
func (s *Store) Presign(ctx context.Context, key, filename string, expiry time.Duration) (string, error) {
	q := url.Values{}
	if filename != "" {
		q.Set("response-content-disposition", `attachment; filename="`+strings.ReplaceAll(filename, `"`, "")+`"`)
	}
	u, err := s.client.PresignedGetObject(ctx, s.cfg.Bucket, key, expiry, q)
	if err != nil {
		return "", fmt.Errorf("s3: presign %s: %w", key, err)
	}
	return u.String(), nil
}

// DeletePrefix removes every object under prefix (a call folder). Unfinished multipart
// uploads are aborted by their uploader.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	if prefix == "" || prefix == "/" {
		return errors.New("s3: refusing to delete the whole bucket")
	}
	objects := s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true})
	var errs []error
	for res := range s.client.RemoveObjects(ctx, s.cfg.Bucket, objects, minio.RemoveObjectsOptions{}) {
		errs = append(errs, fmt.Errorf("s3: delete %s: %w", res.ObjectName, res.Err))
	}
	return errors.Join(errs...)
}

// Remove deletes the objects with these keys (one request per thousand keys); a key
// that does not exist is not an error.
func (s *Store) Remove(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	objects := make(chan minio.ObjectInfo, len(keys))
	for _, k := range keys {
		objects <- minio.ObjectInfo{Key: k}
	}
	close(objects)
	var errs []error
	for res := range s.client.RemoveObjects(ctx, s.cfg.Bucket, objects, minio.RemoveObjectsOptions{}) {
		if !IsNotFound(res.Err) {
			errs = append(errs, fmt.Errorf("s3: delete %s: %w", res.ObjectName, res.Err))
		}
	}
	return errors.Join(errs...)
}

// List returns the keys under prefix (tests, !recordings checks, the tails of a file).
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	for o := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("s3: list %s: %w", prefix, o.Err)
		}
		out = append(out, o.Key)
	}
	return out, nil
}

// MultipartETag is the ETag S3 gives an object completed from parts with these MD5s: the
// MD5 of the concatenated MD5s, a dash and the number of parts.
func MultipartETag(md5s [][]byte) string {
	h := md5.New()
	for _, m := range md5s {
		h.Write(m)
	}
	return fmt.Sprintf("%s-%d", hex.EncodeToString(h.Sum(nil)), len(md5s))
}

func code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

// IsNoSuchUpload reports whether the multipart upload no longer exists.
func IsNoSuchUpload(err error) bool { return code(err) == "NoSuchUpload" }

// IsSetupError reports whether err means the configuration is wrong (bucket, keys,
// permissions) rather than a passing failure: worth telling the operator loudly.
func IsSetupError(err error) bool {
	switch code(err) {
	case "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidBucketName", "AuthorizationHeaderMalformed":
		return true
	}
	return false
}

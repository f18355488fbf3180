package upload

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// fakeStore keeps objects in memory with S3's multipart rules: parts but the last must be
// at least MinPartSize, a part number can be replaced until Complete, a completed or
// aborted upload is gone (NoSuchUpload), multipart ETags are MD5 of MD5s.
type fakeStore struct {
	mu       sync.Mutex
	objects  map[string][]byte
	etags    map[string]string
	uploads  map[string]map[int][]byte
	nextID   int
	puts     map[int]int // part number -> times sent (all keys)
	failNext int
	down     bool
	// beforePut, when set, runs at the start of every Put (outside the lock).
	beforePut func(key string)
}

func newFakeStore() *fakeStore {
	return &fakeStore{objects: map[string][]byte{}, etags: map[string]string{}, uploads: map[string]map[int][]byte{}, puts: map[int]int{}}
}

var errDown = fmt.Errorf("connection refused")

func (s *fakeStore) fail() error {
	if s.down {
		return errDown
	}
	if s.failNext > 0 {
		s.failNext--
		return errDown
	}
	return nil
}

func (s *fakeStore) Bucket() string                 { return "bucket" }
func (s *fakeStore) Key(folder, file string) string { return "rec/" + folder + "/" + file }

func (s *fakeStore) NewMultipart(ctx context.Context, key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return "", err
	}
	s.nextID++
	id := fmt.Sprintf("up-%d", s.nextID)
	s.uploads[id] = map[int][]byte{}
	return id, nil
}

func (s *fakeStore) PutPart(ctx context.Context, key, uploadID string, n int, data, sum []byte) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return "", err
	}
	up := s.uploads[uploadID]
	if up == nil {
		return "", minio.ErrorResponse{Code: "NoSuchUpload"}
	}
	got := md5.Sum(data)
	if !bytes.Equal(got[:], sum) {
		return "", minio.ErrorResponse{Code: "BadDigest"}
	}
	up[n] = append([]byte(nil), data...)
	s.puts[n]++
	return hex.EncodeToString(got[:]), nil
}

func (s *fakeStore) Complete(ctx context.Context, key, uploadID string, parts []s3store.Part) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return "", err
	}
	up := s.uploads[uploadID]
	if up == nil {
		return "", minio.ErrorResponse{Code: "NoSuchUpload"}
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	var obj []byte
	var sums [][]byte
	for i, p := range parts {
		data, ok := up[p.Number]
		sum := md5.Sum(data)
		if !ok || hex.EncodeToString(sum[:]) != p.ETag {
			return "", minio.ErrorResponse{Code: "InvalidPart"}
		}
		if i < len(parts)-1 && len(data) < MinPartSize {
			return "", minio.ErrorResponse{Code: "EntityTooSmall"}
		}
		obj = append(obj, data...)
		sums = append(sums, sum[:])
	}
	delete(s.uploads, uploadID)
	s.objects[key] = obj
	s.etags[key] = s3store.MultipartETag(sums)
	return s.etags[key], nil
}

func (s *fakeStore) Abort(ctx context.Context, key, uploadID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.uploads, uploadID)
	return nil
}

func (s *fakeStore) Put(ctx context.Context, key string, data []byte) (string, error) {
	s.mu.Lock()
	hook := s.beforePut
	s.mu.Unlock()
	if hook != nil {
		hook(key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return "", err
	}
	sum := md5.Sum(data)
	s.objects[key] = append([]byte(nil), data...)
	s.etags[key] = hex.EncodeToString(sum[:])
	return s.etags[key], nil
}

func (s *fakeStore) Head(ctx context.Context, key string) (s3store.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return s3store.Object{}, err
	}
	obj, ok := s.objects[key]
	if !ok {
		return s3store.Object{}, minio.ErrorResponse{Code: "NoSuchKey"}
	}
	return s3store.Object{Size: int64(len(obj)), ETag: s.etags[key]}, nil
}

func (s *fakeStore) object(key string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objects[key]
}

// part is part n of an open multipart upload (nil if it has none).
func (s *fakeStore) part(uploadID string, n int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uploads[uploadID][n]
}

func (s *fakeStore) sent(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts[n]
}

func (s *fakeStore) set(fn func(s *fakeStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

func (s *fakeStore) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return nil, err
	}
	obj, ok := s.objects[key]
	if !ok {
		return nil, minio.ErrorResponse{Code: "NoSuchKey"}
	}
	if int64(len(obj)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", key, max)
	}
	return append([]byte(nil), obj...), nil
}

func (s *fakeStore) List(ctx context.Context, prefix string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return nil, err
	}
	var out []string
	for k := range s.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (s *fakeStore) Remove(ctx context.Context, keys []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail(); err != nil {
		return err
	}
	for _, k := range keys {
		delete(s.objects, k)
		delete(s.etags, k)
	}
	return nil
}

// openUploads counts the multipart uploads neither completed nor aborted.
func (s *fakeStore) openUploads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.uploads)
}

// keys lists the objects under prefix.
func (s *fakeStore) keys(prefix string) []string {
	out, _ := s.List(context.Background(), prefix)
	return out
}

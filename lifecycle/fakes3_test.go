package lifecycle

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// fakeS3 is an in-process object store for unit tests that store and read small objects
// (a manifest's copy): single PUTs, GETs and DELETEs of one bucket, path style, and the
// listing and multi-object delete a prefix's deletion uses, as the store's client's
// transport. It notes what was stored, and can be down (every request answered
// with 503). Integration tests use a real S3 server (internal/devs3).
type fakeS3 struct {
	mu        sync.Mutex
	objects   map[string][]byte
	puts      []string
	manifests [][]byte // the manifest copies stored since the last takeManifests
	down      bool
	// beforePut, when set, runs before every PUT is served (outside mu), with its key.
	beforePut func(key string)
}

// newFakeS3 returns a fakeS3 and a store on it.
func newFakeS3(t *testing.T) (*fakeS3, *s3store.Store) {
	t.Helper()
	f := &fakeS3{objects: map[string][]byte{}}
	store, err := s3store.New(s3store.Config{Endpoint: "s3.test", Bucket: "recordings", Region: "us-east-1",
		AccessKey: "a", SecretKey: "s", PathStyle: true, Transport: f})
	if err != nil {
		t.Fatal(err)
	}
	return f, store
}

func (f *fakeS3) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	hook := f.beforePut
	f.mu.Unlock()
	if hook != nil && r.Method == http.MethodPut {
		hook(strings.TrimPrefix(r.URL.Path, "/recordings/"))
	}
	w := httptest.NewRecorder()
	f.serve(w, r)
	res := w.Result()
	res.Request = r
	return res, nil
}

func (f *fakeS3) serve(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/recordings"), "/")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	switch {
	case r.Method == http.MethodGet && key == "" && r.URL.Query().Get("list-type") == "2":
		f.list(w, r.URL.Query().Get("prefix"))
	case r.Method == http.MethodPost && key == "" && r.URL.Query().Has("delete"):
		f.deleteMany(w, r)
	case r.Method == http.MethodDelete:
		delete(f.objects, key)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPut:
		data, err := io.ReadAll(r.Body)
		if err == nil && strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") {
			data, err = unchunk(data)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.objects[key] = data
		f.puts = append(f.puts, key)
		if strings.HasSuffix(key, "/"+recorder.ManifestFile) {
			f.manifests = append(f.manifests, data)
		}
		sum := md5.Sum(data)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		data, ok := f.objects[key]
		if !ok {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotFound)
			if r.Method == http.MethodGet {
				_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no such key</Message><Key>`+key+`</Key></Error>`)
			}
			return
		}
		sum := md5.Sum(data)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
		w.Header().Set("Last-Modified", "Mon, 07 Dec 2026 00:00:00 GMT")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(data)
		}
	default:
		http.Error(w, "not implemented", http.StatusNotImplemented)
	}
}

// list answers a ListObjectsV2 of the keys under prefix (one page).
func (f *fakeS3) list(w http.ResponseWriter, prefix string) {
	type content struct {
		Key          string
		Size         int
		ETag         string
		LastModified string
	}
	res := struct {
		XMLName     xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
		Name        string
		Prefix      string
		KeyCount    int
		MaxKeys     int
		IsTruncated bool
		Contents    []content
	}{Name: "recordings", Prefix: prefix, MaxKeys: 1000}
	keys := slices.Sorted(maps.Keys(f.objects))
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			sum := md5.Sum(f.objects[k])
			res.Contents = append(res.Contents, content{Key: k, Size: len(f.objects[k]), ETag: `"` + hex.EncodeToString(sum[:]) + `"`,
				LastModified: "2026-12-07T00:00:00.000Z"})
		}
	}
	res.KeyCount = len(res.Contents)
	w.Header().Set("Content-Type", "application/xml")
	_ = xml.NewEncoder(w).Encode(res)
}

// deleteMany answers a DeleteObjects: every key named is deleted.
func (f *fakeS3) deleteMany(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Objects []struct{ Key string } `xml:"Object"`
	}
	if err := xml.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	type deleted struct{ Key string }
	res := struct {
		XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ DeleteResult"`
		Deleted []deleted
	}{}
	for _, o := range req.Objects {
		delete(f.objects, o.Key)
		res.Deleted = append(res.Deleted, deleted{o.Key})
	}
	w.Header().Set("Content-Type", "application/xml")
	_ = xml.NewEncoder(w).Encode(res)
}

// object is the object at key (nil: none).
func (f *fakeS3) object(key string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.objects[key]
}

// setBeforePut sets beforePut.
func (f *fakeS3) setBeforePut(fn func(key string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beforePut = fn
}

// has reports whether the store holds an object at key.
func (f *fakeS3) has(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.objects[key]
	return ok
}

func (f *fakeS3) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// takeManifests returns the manifest copies stored since the last call.
func (f *fakeS3) takeManifests() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.manifests
	f.manifests = nil
	return out
}

// putsOf lists the keys stored so far that end in suffix.
func (f *fakeS3) putsOf(suffix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, k := range f.puts {
		if strings.HasSuffix(k, suffix) {
			out = append(out, k)
		}
	}
	return out
}

// unchunk decodes a body sent with a streaming signature (aws-chunked: "<hex size>;
// chunk-signature=...\r\n<data>\r\n", until a chunk of size 0), which the S3 client
// uses over plain HTTP.
func unchunk(body []byte) ([]byte, error) {
	var out []byte
	for {
		line, rest, ok := bytes.Cut(body, []byte("\r\n"))
		if !ok {
			return nil, errors.New("aws-chunked: no chunk header")
		}
		sizeHex, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(string(sizeHex), 16, 64)
		if err != nil || n < 0 || int64(len(rest)) < n+2 {
			return nil, fmt.Errorf("aws-chunked: bad chunk %q", line)
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, rest[:n]...)
		body = rest[n+2:]
	}
}

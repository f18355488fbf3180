package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/matrix-recorder/matrix-recorder/internal/mediacheck"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// tailLoss bounds the media of a killed instance's file that its completed copy in S3 may
// miss before the kill: the tail is stored every 4 s (on the uploader's 2 s polls), the
// writer flushes every second, the packets take a moment to reach the file, and a loaded
// machine delays all of it a little. It is well below what a file cut at its last whole
// upload part misses: all of it, for the 16 s files of these tests.
const tailLoss = 8 * time.Second

// s3Object downloads an object of the test's bucket into a temporary file.
func (e *s3Env) s3Object(t *testing.T, key string) (path, etag string) {
	t.Helper()
	c, err := e.srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := timeout(t, time.Minute)
	path = filepath.Join(t.TempDir(), filepath.Base(key))
	if err := c.FGetObject(ctx, e.bucket, key, path, minio.GetObjectOptions{}); err != nil {
		t.Fatalf("download %s: %v", key, err)
	}
	info, err := c.StatObject(ctx, e.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("stat %s: %v", key, err)
	}
	return path, strings.Trim(info.ETag, `"`)
}

// etag reads an object's ETag.
func (e *s3Env) etag(t *testing.T, key string) string {
	t.Helper()
	c, err := e.srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.StatObject(context.Background(), e.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("stat %s: %v", key, err)
	}
	return strings.Trim(info.ETag, `"`)
}

// checkSalvagedCopy checks the copy in S3 of an Opus file the killed instance was
// writing, before that instance comes back: the instance that took over completed it
// from the parts and the tail the killed one stored, so it plays (ffprobe, ffmpeg) the
// sender's tone throughout and reaches to within tailLoss of the kill on the call's
// timeline, and the manifest says what it covers. It returns the object's ETag.
func checkSalvagedCopy(t *testing.T, e *s3Env, folder string, m *recorder.Manifest, f recorder.FileEntry, killed time.Time, hz, other float64) string {
	t.Helper()
	if f.Upload == nil {
		t.Errorf("%s: the killed instance's file has no copy in S3 before that instance comes back: what it recorded since its last whole upload part is missing (%s)", f.File, f.EndReason)
		return ""
	}
	key := "calls/" + folder + "/" + f.File
	if f.Upload.Key != key {
		t.Errorf("%s: the copy is at %q, want %q", f.File, f.Upload.Key, key)
	}
	path, etag := e.s3Object(t, key)
	ctx := timeout(t, time.Minute)
	info, err := mediacheck.Probe(ctx, path)
	if err != nil {
		t.Fatalf("ffprobe %s: %v", f.File, err)
	}
	if len(info.Streams) != 1 || info.Streams[0].CodecName != "opus" {
		t.Errorf("%s: streams %+v, want one opus stream", f.File, info.Streams)
	}
	if errs, err := mediacheck.DecodeErrors(ctx, path); err != nil || errs != "" {
		t.Errorf("%s: ffmpeg decode errors: %v %s", f.File, err, errs)
	}
	covered := time.Duration(f.StartOffsetMs)*time.Millisecond + info.Duration
	at := killed.Sub(m.StartedAt)
	t.Logf("%s: the copy in S3 (%d bytes, ETag %s) covers the call up to %s; the kill was at %s (%s before it missing)",
		f.File, info.Size, etag, covered.Round(10*time.Millisecond), at.Round(10*time.Millisecond), (at - covered).Round(10*time.Millisecond))
	if covered < at-tailLoss {
		t.Errorf("%s: the copy ends at %s on the call's timeline, %s before the kill at %s; want at most %s missing",
			f.File, covered.Round(10*time.Millisecond), (at - covered).Round(10*time.Millisecond), at.Round(10*time.Millisecond), tailLoss)
	}
	if covered > at+time.Second {
		t.Errorf("%s: the copy ends at %s, after the kill at %s", f.File, covered, at)
	}
	if want := time.Duration(f.DurationMs) * time.Millisecond; info.Duration < want*95/100 || info.Duration > want*105/100 {
		t.Errorf("%s: the copy lasts %s, the manifest says %s", f.File, info.Duration, want)
	}
	if f.Upload.Bytes != info.Size || f.Status != recorder.StatusInterrupted || !strings.Contains(f.EndReason, "completed") {
		t.Errorf("%s: manifest entry %+v, upload %+v; want it interrupted, its copy of %d bytes, completed by the other instance", f.File, f, *f.Upload, info.Size)
	}
	pcm, err := mediacheck.DecodePCM(ctx, path, pcmRate)
	if err != nil {
		t.Fatal(err)
	}
	wins := mediacheck.Windows(pcm, pcmRate, 500*time.Millisecond)
	if len(wins) < 2 {
		t.Fatalf("%s: only %d half seconds of audio in the copy", f.File, len(wins))
	}
	for i, w := range wins[:len(wins)-1] {
		if a, b := mediacheck.ToneLevel(w, pcmRate, hz), mediacheck.ToneLevel(w, pcmRate, other); a < 0.02 || a < 5*b {
			t.Errorf("%s: at %v of the copy the %v Hz tone is at %.4f (%v Hz at %.4f)", f.File, time.Duration(i)*500*time.Millisecond, hz, a, other, b)
		}
	}
	_ = os.Remove(path)
	return etag
}

// noTails checks that no tail of a growing file is left under a call folder's prefix.
func noTails(t *testing.T, keys []string) {
	t.Helper()
	for _, k := range keys {
		if strings.Contains(k, ".tail/") {
			t.Errorf("a file's tail is left in S3: %s", k)
		}
	}
}

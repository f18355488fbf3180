package upload

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter/mkvscan"
	"github.com/matrix-recorder/matrix-recorder/recorder/oggwriter"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// tailUploader is an uploader of a fleet instance: it keeps the tails of growing files.
func (e *env) tailUploader(ctx context.Context, confirmed *atomic.Int32) *Uploader {
	return New(ctx, e.db, e.store, Options{
		Dir: e.dir, Poll: 10 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		TailEvery: time.Millisecond,
		OnConfirmed: func(*storage.Upload) {
			if confirmed != nil {
				confirmed.Add(1)
			}
		},
		Log: zerolog.Nop(),
	})
}

// oggFile is an Ogg Opus file written by the recorder's writer, 20 ms frames of size
// bytes each.
type oggFile struct {
	t      *testing.T
	w      *oggwriter.Writer
	frames int
	size   int
}

func newOggFile(t *testing.T, path string, size int) *oggFile {
	t.Helper()
	w, err := oggwriter.New(path, media.TrackParams{ClockRate: 48000, Channels: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return &oggFile{t: t, w: w, size: size}
}

// write writes n frames and flushes, so the file ends on a page boundary.
func (o *oggFile) write(n int) {
	o.t.Helper()
	for range n {
		data := bytes.Repeat([]byte{0xfc, byte(o.frames)}, o.size/2) // TOC: CELT 20 ms
		if err := o.w.WriteFrame(media.Frame{Data: data, PTS: time.Duration(o.frames) * 20 * time.Millisecond, Keyframe: true}); err != nil {
			o.t.Fatal(err)
		}
		o.frames++
	}
	if err := o.w.Flush(); err != nil {
		o.t.Fatal(err)
	}
}

// tailEnd is where the stored tail of key ends (0: none).
func (e *env) tailEnd(key string) int64 {
	var end int64
	for _, k := range e.store.keys(tailPrefix(key)) {
		if s, ok := parseSegment(tailPrefix(key), k); ok {
			end = max(end, s.to)
		}
	}
	return end
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// oggPages reads data page by page with the recorder's page parser and returns where
// each page ends and the media time at the end of each (the writer's pre-skip is 0; the
// first two pages are the headers). It fails the test unless data is whole pages.
func oggPages(t *testing.T, data []byte) (ends, ms []int64) {
	t.Helper()
	var off int64
	granule := int64(-1)
	for off < int64(len(data)) {
		p, err := oggwriter.ParsePage(data[off:])
		if err != nil {
			t.Fatalf("page at %d of %d bytes: %v", off, len(data), err)
		}
		off += int64(p.Size())
		if len(ends) >= 2 && p.Granule() >= 0 {
			granule = p.Granule()
		}
		ends = append(ends, off)
		if granule < 0 {
			ms = append(ms, -1) // no audio yet
		} else {
			ms = append(ms, granule*1000/48000)
		}
	}
	return ends, ms
}

// checkOgg checks that data is an Ogg stream of whole pages and returns its media time.
func checkOgg(t *testing.T, data []byte) int64 {
	t.Helper()
	_, ms := oggPages(t, data)
	if len(ms) == 0 {
		t.Fatal("the object holds no Ogg page")
	}
	return ms[len(ms)-1]
}

// checkTail checks the stored tail of a growing Ogg file against the file: its segments
// are one chain from base (the end of the whole parts sent) to where the file ends now,
// each holding exactly the file's bytes its name says, none twice, each ending where a
// page ends with the media time its name says; and the whole parts sent, then the tail,
// are the file. It returns the segments, by start.
func (e *env) checkTail(t *testing.T, file string, base int64) []tailSegment {
	t.Helper()
	key := e.store.Key(e.folder, file)
	data, err := os.ReadFile(e.path(file))
	if err != nil {
		t.Fatal(err)
	}
	ends, ms := oggPages(t, data)
	msAt := map[int64]int64{}
	for i, end := range ends {
		msAt[end] = ms[i]
	}
	var segs []tailSegment
	for _, k := range e.store.keys(tailPrefix(key)) {
		s, ok := parseSegment(tailPrefix(key), k)
		if !ok {
			t.Fatalf("%s under the tail's prefix is no segment", k)
		}
		segs = append(segs, s)
	}
	slices.SortFunc(segs, func(a, b tailSegment) int { return int(a.from - b.from) })
	pos := base
	var tail []byte
	for _, s := range segs {
		if s.from != pos {
			t.Fatalf("segment %s starts at %d; the chain before it ends at %d", s.key, s.from, pos)
		}
		obj := e.store.object(s.key)
		if s.to > int64(len(data)) || !bytes.Equal(obj, data[s.from:s.to]) {
			t.Fatalf("segment %s (%d bytes) is not the file's bytes [%d, %d)", s.key, len(obj), s.from, s.to)
		}
		want, ok := msAt[s.to]
		if !ok || s.ms != want {
			t.Fatalf("segment %s ends at %d: a page ends there %v, media time %d ms, its name says %d", s.key, s.to, ok, want, s.ms)
		}
		tail = append(tail, obj...)
		pos = s.to
	}
	if pos != int64(len(data)) {
		t.Fatalf("the tail ends at %d, the file at %d", pos, len(data))
	}
	var whole []byte
	if base > 0 {
		row, err := e.db.UploadOf(context.Background(), e.rec, file)
		if err != nil {
			t.Fatal(err)
		}
		for n := 1; int64(len(whole)) < base; n++ {
			p := e.store.part(row.UploadID, n)
			if p == nil {
				t.Fatalf("part %d of the upload is missing, the parts reach %d of %d", n, len(whole), base)
			}
			whole = append(whole, p...)
		}
	}
	if !bytes.Equal(append(whole, tail...), data) {
		t.Fatalf("the whole parts (%d bytes) and the tail (%d bytes) are not the file (%d bytes)", len(whole), len(tail), len(data))
	}
	return segs
}

// TestOggTrackerStopsAtWholePages: the tracker follows a growing Ogg file to the end of
// its last whole page, never into one still being written, with the media time there;
// a page that fails its checksum stops it (the tail is then not cut at a page).
func TestOggTrackerStopsAtWholePages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.ogg")
	o := newOggFile(t, path, 160)
	for range 10 {
		o.write(7)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ends, ms := oggPages(t, data)
	tr := &oggTracker{}
	page := -1 // the last page whole in the bytes given
	for cut := int64(0); cut <= int64(len(data)); cut++ {
		for page+1 < len(ends) && ends[page+1] <= cut {
			page++
		}
		tr.advance(bytes.NewReader(data[:cut]), cut)
		wantPos, wantMs := int64(0), int64(-1)
		if page >= 0 {
			wantPos, wantMs = ends[page], ms[page]
		}
		if tr.bad || tr.pos != wantPos || tr.mediaMs() != wantMs {
			t.Fatalf("after %d bytes: at %d with %d ms (bad %v), want %d with %d ms", cut, tr.pos, tr.mediaMs(), tr.bad, wantPos, wantMs)
		}
	}
	if tr.mediaMs() != 70*20 {
		t.Errorf("%d ms at the end, want 1400", tr.mediaMs())
	}

	bad := slices.Clone(data)
	bad[ends[3]-1] ^= 0x55 // the last byte of the fourth page (audio)
	tr = &oggTracker{}
	tr.advance(bytes.NewReader(bad), int64(len(bad)))
	if !tr.bad || tr.pos != ends[2] {
		t.Errorf("a page with a wrong checksum: at %d (bad %v), want a stop at %d", tr.pos, tr.bad, ends[2])
	}
}

// TestSalvageSmallOggFromItsTail: an instance writes a small Ogg file (no whole part yet,
// so no multipart upload) and dies; its tail is in the store. The instance that takes
// over completes the copy from the tail: the object is the file as it was at the last
// tail, whole pages, with its media time; the tail is gone, the row is confirmed, and the
// dead instance, back, does not upload the file again.
func TestSalvageSmallOggFromItsTail(t *testing.T) {
	e := newEnv(t)
	ctx, kill := context.WithCancel(context.Background())
	dead := e.tailUploader(ctx, nil)
	path := e.path("a.ogg")
	o := newOggFile(t, path, 160)
	dead.Follow(e.rec, e.folder, "a.ogg")
	key := e.store.Key(e.folder, "a.ogg")
	var sizes []int64
	for range 5 {
		o.write(50) // one second
		size := fileSize(t, path)
		waitFor(t, "the tail", func() bool { return e.tailEnd(key) == size })
		sizes = append(sizes, size)
	}
	// One chain of segments from the file's start, each step's growth in its own
	// segments (a step may take more than one: the writer writes full pages before its
	// flush).
	segs := e.checkTail(t, "a.ogg", 0)
	for _, size := range sizes {
		if !slices.ContainsFunc(segs, func(s tailSegment) bool { return s.to == size }) {
			t.Errorf("no segment ends where step %d of growth ended (%d)", slices.Index(sizes, size)+1, size)
		}
	}
	want, _ := os.ReadFile(path)
	// Killed: nothing finishes the file on this instance.
	kill()
	_ = dead.Close(context.Background())
	o.write(50) // written after the last tail: lost with the host

	var confirmed atomic.Int32
	taker := e.tailUploader(context.Background(), &confirmed)
	defer taker.Close(context.Background())
	var got Salvaged
	taker.Salvage(e.rec, e.folder, "a.ogg", func(s Salvaged) { got = s })
	if err := taker.Wait(context.Background(), e.rec); err != nil {
		t.Fatal(err)
	}
	obj := e.store.object(key)
	if !bytes.Equal(obj, want) {
		t.Fatalf("the object (%d bytes) is not the file at its last tail (%d bytes)", len(obj), len(want))
	}
	ms := checkOgg(t, obj)
	if ms < 4900 || ms > 5000 || got.MediaMs != ms || !got.FromTail || got.Upload == nil {
		t.Errorf("salvage %+v; the object has %d ms of media, want 5 s", got, ms)
	}
	row, err := e.db.UploadOf(context.Background(), e.rec, "a.ogg")
	if err != nil || row.Status != storage.UploadConfirmed || row.Bytes != int64(len(want)) || row.UploadID != "" || confirmed.Load() != 1 {
		t.Fatalf("upload row %+v %v (confirmed %d)", row, err, confirmed.Load())
	}
	if keys := e.store.keys(tailPrefix(key)); len(keys) != 0 {
		t.Errorf("tail segments left: %v", keys)
	}

	// The dead instance comes back and finishes its (longer) local file: the copy the
	// taker made stands.
	back := e.tailUploader(context.Background(), nil)
	defer back.Close(context.Background())
	size, sum := digest(t, path)
	back.Finish(e.rec, e.folder, "a.ogg", size, sum)
	if err := back.Wait(context.Background(), e.rec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.store.object(key), want) {
		t.Error("the returning instance replaced the completed copy")
	}
}

// TestSalvageMultipartOggWithTail: a file past one whole part dies; the taker completes
// the multipart upload with the tail as part 2. While it grew, the chain of tail segments
// started again after the whole part (the older segments deleted), and a poll without
// growth stored nothing.
func TestSalvageMultipartOggWithTail(t *testing.T) {
	e := newEnv(t)
	ctx, kill := context.WithCancel(context.Background())
	dead := e.tailUploader(ctx, nil)
	path := e.path("b.ogg")
	o := newOggFile(t, path, 1000)
	dead.Follow(e.rec, e.folder, "b.ogg")
	key := e.store.Key(e.folder, "b.ogg")
	o.write(2000) // ~2 MB
	size := fileSize(t, path)
	waitFor(t, "the first tail", func() bool { return e.tailEnd(key) == size })
	e.checkTail(t, "b.ogg", 0)
	first := e.store.keys(tailPrefix(key))
	puts := e.store.sent(1)
	time.Sleep(50 * time.Millisecond) // polls without growth
	if got := e.store.keys(tailPrefix(key)); len(got) != len(first) {
		t.Errorf("segments %v after polls without growth, were %v", got, first)
	}
	o.write(4000) // past 5 MiB: part 1 is whole
	waitFor(t, "part 1", func() bool { return e.store.sent(1) > puts })
	size = fileSize(t, path)
	waitFor(t, "the tail past part 1", func() bool {
		segs := e.store.keys(tailPrefix(key))
		if len(segs) == 0 || e.tailEnd(key) != size {
			return false
		}
		s, _ := parseSegment(tailPrefix(key), segs[0])
		return s.from == MinPartSize
	})
	for _, k := range first {
		if slices.Contains(e.store.keys(tailPrefix(key)), k) {
			t.Errorf("segment %s of the chain before part 1 was not deleted", k)
		}
	}
	e.checkTail(t, "b.ogg", MinPartSize) // part 1, then the tail: the file
	o.write(100)
	size = fileSize(t, path)
	waitFor(t, "the last tail", func() bool { return e.tailEnd(key) == size })
	e.checkTail(t, "b.ogg", MinPartSize)
	want, _ := os.ReadFile(path)
	kill()
	_ = dead.Close(context.Background())

	taker := e.tailUploader(context.Background(), nil)
	defer taker.Close(context.Background())
	var got Salvaged
	taker.Salvage(e.rec, e.folder, "b.ogg", func(s Salvaged) { got = s })
	if err := taker.Wait(context.Background(), e.rec); err != nil {
		t.Fatal(err)
	}
	obj := e.store.object(key)
	if !bytes.Equal(obj, want) {
		t.Fatalf("the object (%d bytes) is not the file at its last tail (%d bytes)", len(obj), len(want))
	}
	if ms := checkOgg(t, obj); ms < 121000 || got.MediaMs != ms || got.Upload == nil || !strings.Contains(got.Upload.ETag, "-2") {
		t.Errorf("salvage %+v, object media %d ms, want 122 s in two parts", got, ms)
	}
}

// TestSalvageWebMPlays: a WebM (unknown-size clusters while written, patched as the
// whole parts go) dies past a whole part; the completed copy is the file at its last
// tail as Matroska readers see it: every block up to there, none torn, the clusters'
// timestamps in order.
func TestSalvageWebMPlays(t *testing.T) {
	e := newEnv(t)
	ctx, kill := context.WithCancel(context.Background())
	dead := e.tailUploader(ctx, nil)
	path := e.path("v.webm")
	key := e.store.Key(e.folder, "v.webm")
	var last int64
	stop := 8 << 20
	dead.Follow(e.rec, e.folder, "v.webm")
	writeWebM(t, path, 12<<20, func(size int64) {
		if size < int64(stop) {
			return
		}
		if last == 0 {
			// Dies here: wait for this point's tail, then the rest is written with
			// nobody following.
			tr := newMkvTracker(true)
			f, _ := os.Open(path)
			tr.advance(f, size)
			_ = f.Close()
			last = min(tr.pos, size)
			waitFor(t, "the tail", func() bool { return e.tailEnd(key) >= last })
			kill()
			_ = dead.Close(context.Background())
		}
	})
	taker := e.tailUploader(context.Background(), nil)
	defer taker.Close(context.Background())
	var got Salvaged
	taker.Salvage(e.rec, e.folder, "v.webm", func(s Salvaged) { got = s })
	if err := taker.Wait(context.Background(), e.rec); err != nil {
		t.Fatal(err)
	}
	obj := e.store.object(key)
	if int64(len(obj)) < last || got.Upload == nil {
		t.Fatalf("the object has %d bytes, the file had %d at the kill; salvage %+v", len(obj), last, got)
	}
	var blocks int
	var lastTS int64 = -1
	f, err := mkvscan.Scan(bytes.NewReader(obj), int64(len(obj)), mkvscan.Visitor{Block: func(b mkvscan.Block) error {
		if b.Timestamp < lastTS {
			t.Errorf("block at %d ms after one at %d ms", b.Timestamp, lastTS)
		}
		blocks++
		lastTS = b.Timestamp
		return nil
	}})
	if err != nil || f.Torn || f.Skipped != 0 || f.End != int64(len(obj)) {
		t.Fatalf("scan of the object: %+v %v", f, err)
	}
	if blocks == 0 || got.MediaMs != lastTS {
		t.Errorf("%d blocks, the last at %d ms; salvage says %d ms", blocks, lastTS, got.MediaMs)
	}
}

// TestOwnerThatLostTheFileLeavesTheCompletedCopy: the instance that wrote a file did
// not die (it lost its lease in a database outage) and finishes the file after another
// instance completed its copy from the tail: it finds its multipart upload gone and the
// copy completed by the other, and leaves it (no new upload over it).
func TestOwnerThatLostTheFileLeavesTheCompletedCopy(t *testing.T) {
	e := newEnv(t)
	owner := e.tailUploader(context.Background(), nil)
	defer owner.Close(context.Background())
	path := e.path("c.bin")
	key := e.store.Key(e.folder, "c.bin")
	appendFile(t, path, randomBytes(6<<20))
	owner.Follow(e.rec, e.folder, "c.bin")
	size := fileSize(t, path)
	waitFor(t, "part 1 and the tail", func() bool { return e.store.sent(1) == 1 && e.tailEnd(key) == size })

	taker := e.tailUploader(context.Background(), nil)
	defer taker.Close(context.Background())
	taker.Salvage(e.rec, e.folder, "c.bin", nil)
	if err := taker.Wait(context.Background(), e.rec); err != nil {
		t.Fatal(err)
	}
	copied := e.store.object(key)
	if int64(len(copied)) != size {
		t.Fatalf("the completed copy has %d bytes, want %d", len(copied), size)
	}
	appendFile(t, path, randomBytes(1<<20))
	size, sum := digest(t, path)
	owner.Finish(e.rec, e.folder, "c.bin", size, sum)
	if err := owner.Wait(context.Background(), e.rec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.store.object(key), copied) {
		t.Error("the owner uploaded its file over the copy the other instance completed")
	}
	if row, err := e.db.UploadOf(context.Background(), e.rec, "c.bin"); err != nil || row.Status != storage.UploadConfirmed || row.Bytes != int64(len(copied)) {
		t.Errorf("upload row %+v %v", row, err)
	}
}

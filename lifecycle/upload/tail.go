package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/oggwriter"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// Tails: in a fleet, a file that is being written reaches object storage in whole parts
// (at least 5 MB, S3's minimum for all but the last part of a multipart upload), which is
// twenty minutes of an Opus track. So that an instance killed with its host does not take
// those minutes with it, the uploader also keeps the file's tail, the bytes past its last
// whole part up to a point where the file plays (an Ogg page, a Matroska element), in
// small objects beside the upload, every TailEvery while the file grows. The instance
// that takes the recording over completes the dead instance's multipart upload with the
// tail as its last part (salvage.go).
//
// The tail is a chain of segments, each holding only the bytes the file gained since the
// previous one, so a tail costs one PUT per interval of what the track produced then, not
// the whole tail again. A segment's name says what it holds: `<key>.tail/<from>-<to>-<ms>`
// (byte offsets in hex, ms the media time the file reaches at <to>, or -1). When a whole
// part is sent, the chain starts again at the part's end (its first segment sent as the
// bytes will be final, like the parts) and the older segments are deleted.

// TailSuffix ends the key prefix of a file's tail segments (<key>.tail/).
const TailSuffix = ".tail/"

// tailPrefix is the prefix of the tail segments of the object key.
func tailPrefix(key string) string { return key + TailSuffix }

// tailSegment is one stored piece of a tail: the file's bytes [from, to).
type tailSegment struct {
	key      string
	from, to int64
	// ms is the media time the file reaches at to (-1: unknown).
	ms int64
}

func segmentKey(key string, from, to, ms int64) string {
	return fmt.Sprintf("%s%016x-%016x-%d", tailPrefix(key), from, to, ms)
}

// parseSegment reads a segment's name; ok is false for anything else under the prefix.
func parseSegment(prefix, key string) (tailSegment, bool) {
	name, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return tailSegment{}, false
	}
	f := strings.SplitN(name, "-", 3)
	if len(f) != 3 {
		return tailSegment{}, false
	}
	from, err1 := strconv.ParseInt(f[0], 16, 64)
	to, err2 := strconv.ParseInt(f[1], 16, 64)
	ms, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || from < 0 || to <= from {
		return tailSegment{}, false
	}
	return tailSegment{key: key, from: from, to: to, ms: ms}, true
}

// listSegments lists the tail segments of an object key, by start.
func (u *Uploader) listSegments(ctx context.Context, key string) ([]tailSegment, []string, error) {
	keys, err := u.store.List(ctx, tailPrefix(key))
	if err != nil {
		return nil, nil, err
	}
	var segs []tailSegment
	for _, k := range keys {
		if s, ok := parseSegment(tailPrefix(key), k); ok {
			segs = append(segs, s)
		}
	}
	sort.Slice(segs, func(i, j int) bool {
		return segs[i].from < segs[j].from || segs[i].from == segs[j].from && segs[i].to > segs[j].to
	})
	return segs, keys, nil
}

// dropTails deletes every tail segment of an object key (its copy is complete).
func (u *Uploader) dropTails(ctx context.Context, key string) error {
	keys, err := u.store.List(ctx, tailPrefix(key))
	if err != nil {
		return err
	}
	return u.store.Remove(ctx, keys)
}

// tailState is a followed file's tail in object storage.
type tailState struct {
	// start and end bound the chain stored: the file's bytes [start, end).
	start, end int64
	segs       []string
	// stale are segments of an earlier chain, to delete.
	stale []string
	at    time.Time
	// ogg follows an Ogg file's pages (Matroska has the follower's mkvTracker).
	ogg *oggTracker
}

// playableEnd is how far the file can be cut so that it plays, and the media time there
// (-1: unknown).
func (f *follower) playableEnd(path string, size int64) (int64, int64) {
	switch {
	case f.mkv != nil:
		if f.mkv.bad {
			return size, -1
		}
		return min(f.mkv.pos, size), f.mkv.lastMs
	case f.tail.ogg != nil:
		file, err := os.Open(path)
		if err != nil {
			return 0, -1
		}
		f.tail.ogg.advance(file, size)
		_ = file.Close()
		if f.tail.ogg.bad {
			return size, -1
		}
		return f.tail.ogg.pos, f.tail.ogg.mediaMs()
	}
	return size, -1
}

// wholeParts lists where the whole parts sent from the file's start end: ends[j] is the
// end of part j, ends[0] the file's start. A tail starts at one of them (the last, unless
// a kill came between a part and the next tail). Without a multipart upload there is none.
func wholeParts(uploadID string, chunks map[int]storage.Chunk) []int64 {
	ends := []int64{0}
	if uploadID == "" {
		return ends
	}
	for n := 1; ; n++ {
		c, ok := chunks[n]
		if !ok || c.Offset != ends[n-1] || c.Size < MinPartSize {
			return ends
		}
		ends = append(ends, c.Offset+c.Size)
	}
}

// keepTail stores what the file gained past its whole parts since the last tail, at most
// every TailEvery, and deletes the segments no longer needed. A failure is logged: the
// next poll tries again.
func (u *Uploader) keepTail(ctx context.Context, f *follower, uploadID, path, key string) {
	t := f.tail
	if t == nil || time.Since(t.at) < u.opts.TailEvery {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	end, ms := f.playableEnd(path, fi.Size())
	ends := wholeParts(uploadID, f.chunks)
	base := ends[len(ends)-1]
	if t.start != base || t.end < base {
		t.stale = append(t.stale, t.segs...)
		t.segs, t.start, t.end = nil, base, base
	}
	if end > t.end {
		if err := u.putSegment(ctx, f, path, key, t.end, end, ms); err != nil {
			f.log.Warn().Err(err).Msg("Could not store the file's tail; trying again")
			return
		}
	}
	t.at = time.Now()
	if len(t.stale) > 0 {
		if err := u.store.Remove(ctx, t.stale); err != nil {
			f.log.Warn().Err(err).Msg("Could not delete the file's older tail")
			return
		}
		t.stale = nil
	}
}

// putSegment stores the file's bytes [from, to) as a tail segment.
func (u *Uploader) putSegment(ctx context.Context, f *follower, path, key string, from, to, ms int64) error {
	release, err := u.slot(ctx)
	if err != nil {
		return err
	}
	defer release()
	data := make([]byte, to-from)
	if err := readAt(path, data, from); err != nil {
		return err
	}
	if f.mkv != nil {
		f.mkv.patch(data, from) // as the whole parts are: what is known final is sent final
	}
	k := segmentKey(key, from, to, ms)
	if _, err := u.store.Put(ctx, k, data); err != nil {
		return err
	}
	f.tail.segs = append(f.tail.segs, k)
	f.tail.end = to
	if u.opts.OnSent != nil {
		u.opts.OnSent(int64(len(data)))
	}
	return nil
}

// oggTracker follows an Ogg Opus file's pages as it grows, with the recorder's own page
// parser: pos is the end of the last complete page, where the file can be cut and still
// play.
type oggTracker struct {
	pos     int64
	pages   int
	packets int   // packets that ended on the pages so far (the first two are the headers)
	granule int64 // of the last page on which an audio packet ends
	preSkip int64
	bad     bool
}

// advance parses the pages that are complete in the first size bytes.
func (t *oggTracker) advance(r io.ReaderAt, size int64) {
	var buf []byte
	for !t.bad && t.pos < size {
		// A page is at most MaxPageSize bytes: a buffer that long holds one whole.
		n := min(size-t.pos, oggwriter.MaxPageSize)
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		m, err := r.ReadAt(buf[:n], t.pos)
		if err != nil && !errors.Is(err, io.EOF) {
			return // the next poll reads again
		}
		b := buf[:m]
		for len(b) > 0 {
			p, err := oggwriter.ParsePage(b)
			if errors.Is(err, oggwriter.ErrShortPage) {
				break
			}
			if err != nil {
				// Not a page of the writer's: the tail cannot be cut at a page.
				t.bad = true
				return
			}
			t.take(&p)
			b = b[p.Size():]
		}
		if len(b) == m {
			return // no whole page yet past pos
		}
	}
}

// take follows a complete page: the pre-skip from the identification header on the first,
// the granule position of the last on which an audio packet ends.
func (t *oggTracker) take(p *oggwriter.Page) {
	if t.pages == 0 {
		if _, preSkip, ok := oggwriter.ParseOpusHead(p.Body()); ok {
			t.preSkip = int64(preSkip)
		}
	}
	ends := p.Packets()
	if t.packets+ends > 2 && p.Granule() >= 0 {
		t.granule = p.Granule()
	}
	t.packets += ends
	t.pages++
	t.pos += int64(p.Size())
}

// mediaMs is the media time at the end of the last complete page (Opus: 48 kHz
// granules), or -1 before the first audio packet.
func (t *oggTracker) mediaMs() int64 {
	if t.packets <= 2 {
		return -1
	}
	return max(t.granule-t.preSkip, 0) * 1000 / 48000
}

package upload

import (
	"encoding/binary"
	"errors"
	"io"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter/mkvscan"
)

// A WebM or Matroska file written for crash safety has clusters of unknown size; when it
// is finalised, every cluster's 8-byte size field is patched in place. Sending the file as
// it grows would then mean sending every part again at the end. mkvTracker follows the
// file's element structure instead: once the next cluster (or the Cues) has started, a
// cluster's final size is known, and the bytes are sent as they will be after
// finalisation. Only the cluster still being written is held back, and only the header
// (Segment size, SeekHead, Info: in the first part) changes at the end.
//
// This is a prediction, not a promise: finalize checks every part against the final file
// and sends again whatever differs, so a file the tracker does not understand costs
// bandwidth, never correctness.

type mkvCluster struct {
	sizeOff   int64 // where the 8-byte size field is
	dataStart int64
	end       int64 // -1 while unknown
}

type mkvTracker struct {
	pos       int64
	state     int // 0: EBML header next, 1: Segment next, 2: inside the Segment
	inCluster bool
	clusters  []mkvCluster
	bad       bool
	scratch   [12]byte
	// times: follow the media time (a file whose tail is kept); clusterMs is then the
	// current cluster's timestamp and lastMs the media time of the last complete
	// SimpleBlock (-1: none yet); the writers use millisecond timestamps.
	times             bool
	clusterMs, lastMs int64
}

// newMkvTracker returns a tracker; times makes it also read every block's timestamp,
// which only a kept tail needs (one more small read per block).
func newMkvTracker(times bool) *mkvTracker { return &mkvTracker{times: times, lastMs: -1} }

// isMatroska reports whether a file of the call folder is WebM or Matroska.
func isMatroska(file string) bool {
	c, ok := codec.ContainerOf(file)
	return ok && c.EBML
}

// advance parses the element headers that are complete in the first size bytes.
func (t *mkvTracker) advance(r io.ReaderAt, size int64) {
	for !t.bad && t.pos < size {
		n, _ := r.ReadAt(t.scratch[:], t.pos)
		hdr := t.scratch[:n]
		id, sz, hdrLen, szLen, err := mkvscan.ParseHeader(hdr)
		switch {
		case errors.Is(err, mkvscan.ErrTruncated):
			if n == len(t.scratch) {
				t.bad = true
			}
			return
		case err != nil:
			t.bad = true
			return
		}
		unknown := sz == mkvscan.UnknownSize
		start := t.pos
		dataStart := t.pos + int64(hdrLen)
		switch t.state {
		case 0:
			if id != mkvscan.IDEBML || unknown {
				t.bad = true
				return
			}
			if dataStart+sz > size {
				return
			}
			t.pos, t.state = dataStart+sz, 1
			continue
		case 1:
			if id != mkvscan.IDSegment {
				t.bad = true
				return
			}
			t.pos, t.state = dataStart, 2
			continue
		}
		if t.inCluster && mkvscan.IsLevel1(id) {
			t.clusters[len(t.clusters)-1].end = start
			t.inCluster = false
		}
		if id == mkvscan.IDCluster && unknown {
			if szLen != 8 {
				t.bad = true // only an 8-byte size can be patched in place
				return
			}
			t.clusters = append(t.clusters, mkvCluster{sizeOff: start + int64(hdrLen-szLen), dataStart: dataStart, end: -1})
			t.inCluster = true
			t.pos = dataStart
			continue
		}
		if unknown {
			t.bad = true // an unknown-size element we do not follow
			return
		}
		if dataStart+sz > size {
			return // not all there yet; its end is needed before the next header
		}
		if t.inCluster && t.times {
			t.timestamp(r, id, dataStart, sz)
		}
		t.pos = dataStart + sz
	}
}

// safeEnd is how far the file can be sent now: up to the size field of the first cluster
// whose end is not known yet, and no further than parsed.
func (t *mkvTracker) safeEnd(size int64) int64 {
	if t.bad {
		return size
	}
	end := min(t.pos, size)
	for _, c := range t.clusters {
		if c.end < 0 {
			return min(end, c.sizeOff)
		}
	}
	return end
}

// patch writes the final size of every finished cluster whose size field overlaps
// buf (which holds the file's bytes from off).
func (t *mkvTracker) patch(buf []byte, off int64) {
	if t.bad {
		return
	}
	var field [8]byte
	for _, c := range t.clusters {
		if c.end < 0 || c.sizeOff+8 <= off || c.sizeOff >= off+int64(len(buf)) {
			continue
		}
		binary.BigEndian.PutUint64(field[:], uint64(c.end-c.dataStart))
		field[0] = 0x01
		for i := int64(0); i < 8; i++ {
			if p := c.sizeOff + i - off; p >= 0 && p < int64(len(buf)) {
				buf[p] = field[i]
			}
		}
	}
}

// timestamp notes the media time a complete element of a cluster tells: the cluster's
// Timestamp, or a SimpleBlock's (its track number, then its 16-bit offset from it).
func (t *mkvTracker) timestamp(r io.ReaderAt, id uint32, dataStart, sz int64) {
	switch {
	case id == mkvscan.IDTimestamp && sz <= 8:
		b := t.scratch[:sz]
		if n, _ := r.ReadAt(b, dataStart); int64(n) == sz {
			if v, ok := mkvscan.Uint(b); ok {
				t.clusterMs = int64(v)
			}
		}
	case id == mkvscan.IDSimpleBlock && sz >= 4:
		b := t.scratch[:min(sz, 10)]
		n, _ := r.ReadAt(b, dataStart)
		_, vl, err := mkvscan.ParseVint(b[:n])
		if err == nil && n >= vl+2 {
			t.lastMs = max(t.lastMs, t.clusterMs+int64(int16(binary.BigEndian.Uint16(b[vl:vl+2]))))
		}
	}
}

package upload

import (
	"encoding/binary"
	"io"
	"path"
	"strings"
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

// Element ids the tracker needs.
const (
	idEBML        = 0x1A45DFA3
	idSegment     = 0x18538067
	idCluster     = 0x1F43B675
	idCues        = 0x1C53BB6B
	idSeekHead    = 0x114D9B74
	idInfo        = 0x1549A966
	idTracks      = 0x1654AE6B
	idTags        = 0x1254C367
	idChapters    = 0x1043A770
	idAttachments = 0x1941A469
)

// topLevel reports whether an element id only appears directly in the Segment: meeting
// one ends an unknown-size cluster.
func topLevel(id uint32) bool {
	switch id {
	case idCluster, idCues, idSeekHead, idInfo, idTracks, idTags, idChapters, idAttachments:
		return true
	}
	return false
}

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
}

func isMatroska(file string) bool {
	switch strings.ToLower(path.Ext(file)) {
	case ".webm", ".mkv", ".mka":
		return true
	}
	return false
}

// readID reads an element id (1 to 4 bytes, marker kept) and returns it and its length.
func readID(b []byte) (uint32, int) {
	if len(b) == 0 || b[0] == 0 {
		return 0, 0
	}
	n := 1
	for mask := byte(0x80); n <= 4 && b[0]&mask == 0; mask >>= 1 {
		n++
	}
	if n > 4 || len(b) < n {
		return 0, 0
	}
	var id uint32
	for i := 0; i < n; i++ {
		id = id<<8 | uint32(b[i])
	}
	return id, n
}

// readSize reads an element size vint; unknown reports the all-ones value.
func readSize(b []byte) (size int64, n int, unknown bool) {
	if len(b) == 0 || b[0] == 0 {
		return 0, 0, false
	}
	n = 1
	for mask := byte(0x80); b[0]&mask == 0; mask >>= 1 {
		n++
	}
	if len(b) < n {
		return 0, 0, false
	}
	v := uint64(b[0] & (0xFF >> n))
	all := v == uint64(0xFF>>n)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
		all = all && b[i] == 0xFF
	}
	if v > 1<<56 {
		return 0, 0, false
	}
	return int64(v), n, all
}

// advance parses the element headers that are complete in the first size bytes.
func (t *mkvTracker) advance(r io.ReaderAt, size int64) {
	for !t.bad && t.pos < size {
		n, _ := r.ReadAt(t.scratch[:], t.pos)
		hdr := t.scratch[:n]
		id, idLen := readID(hdr)
		if idLen == 0 {
			if n == len(t.scratch) {
				t.bad = true
			}
			return
		}
		sz, szLen, unknown := readSize(hdr[idLen:])
		if szLen == 0 {
			if n == len(t.scratch) {
				t.bad = true
			}
			return
		}
		start := t.pos
		dataStart := t.pos + int64(idLen+szLen)
		switch t.state {
		case 0:
			if id != idEBML || unknown {
				t.bad = true
				return
			}
			if dataStart+sz > size {
				return
			}
			t.pos, t.state = dataStart+sz, 1
			continue
		case 1:
			if id != idSegment {
				t.bad = true
				return
			}
			t.pos, t.state = dataStart, 2
			continue
		}
		if t.inCluster && topLevel(id) {
			t.clusters[len(t.clusters)-1].end = start
			t.inCluster = false
		}
		if id == idCluster && unknown {
			if szLen != 8 {
				t.bad = true // only an 8-byte size can be patched in place
				return
			}
			t.clusters = append(t.clusters, mkvCluster{sizeOff: start + int64(idLen), dataStart: dataStart, end: -1})
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

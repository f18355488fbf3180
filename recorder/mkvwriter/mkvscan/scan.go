package mkvscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// ErrNotMatroska means that the data does not start with an EBML header and a Segment.
var ErrNotMatroska = errors.New("not a matroska file")

// maxHeaderPayload bounds the EBML header, Info and Tracks payloads the scanner reads into memory.
const maxHeaderPayload = 4 << 20

// File is what Scan found in a file.
type File struct {
	DocType string
	// EBMLHeader, Segment and the level 1 elements found (ID 0 when absent). For elements
	// seen more than once, the first.
	EBMLHeader, Segment, SeekHead, Info, Tracks, Cues Header
	// TimestampScale from Info in nanoseconds (1000000 when absent).
	TimestampScale uint64
	// Duration from Info in TimestampScale units (0 when absent).
	Duration  float64
	TrackList []Track
	// FirstCluster is the offset of the first Cluster, -1 when there is none.
	FirstCluster int64
	// Clusters and Blocks count the clusters with a timestamp and the complete blocks.
	Clusters, Blocks int
	// End is where the last complete element read ends.
	End int64
	// Torn is true when the data ends inside an element (a crash while writing).
	Torn bool
	// Skipped counts bytes of invalid data that were stepped over.
	Skipped int64
}

// Track is a TrackEntry.
type Track struct {
	Number, UID, Type uint64
	Name, CodecID     string
	CodecPrivate      []byte
	Width, Height     uint64
	Channels          uint64
	SamplingFrequency float64
}

// Cluster is the start of a cluster.
type Cluster struct {
	Offset     int64
	DataOffset int64
	// Size of the cluster, UnknownSize while it was being written.
	Size      int64
	Timestamp uint64
}

// Block is one complete SimpleBlock or BlockGroup.
type Block struct {
	// ElementID is IDSimpleBlock or IDBlockGroup; Offset and Size span the whole element.
	ElementID    uint32
	Offset, Size int64
	Track        uint64
	// Timestamp is absolute, in TimestampScale units.
	Timestamp int64
	Keyframe  bool
	// Duration is the BlockDuration, or -1 when absent.
	Duration int64
	// Lacing is the lacing type (0: none); with lacing, the data includes the lace headers.
	Lacing               byte
	DataOffset, DataSize int64
}

// Visitor receives clusters and blocks in file order. Either function may be nil; an error
// returned by one ends the scan with that error.
type Visitor struct {
	Cluster func(Cluster) error
	Block   func(Block) error
}

type scanner struct {
	r    io.ReaderAt
	size int64
	f    *File
	v    Visitor
}

// Scan reads the structure of a Matroska file of the given size. It fails only for I/O
// errors, errors from the visitor, and data that is not Matroska at all; a torn tail and
// garbage are reported in File.
func Scan(r io.ReaderAt, size int64, v Visitor) (*File, error) {
	s := &scanner{
		r:    newCachedReader(r, 64<<10),
		size: size,
		f:    &File{TimestampScale: 1000000, FirstCluster: -1},
		v:    v,
	}
	if err := s.scan(); err != nil {
		return s.f, err
	}
	return s.f, nil
}

func (s *scanner) scan() error {
	f := s.f
	h, err := ReadHeader(s.r, 0, s.size)
	if err != nil {
		if errors.Is(err, ErrTruncated) || errors.Is(err, ErrInvalid) {
			return fmt.Errorf("reading ebml header: %w", errors.Join(ErrNotMatroska, err))
		}
		return err
	}
	if h.ID != IDEBML || h.Size == UnknownSize || h.End() > s.size {
		return fmt.Errorf("reading ebml header: %w", ErrNotMatroska)
	}
	payload, err := ReadPayload(s.r, h, maxHeaderPayload)
	if err != nil {
		return fmt.Errorf("reading ebml header: %w", errors.Join(ErrNotMatroska, err))
	}
	_ = Children(payload, func(id uint32, data []byte) {
		if id == IDDocType {
			f.DocType = string(trimZero(data))
		}
	})
	f.EBMLHeader = h
	f.End = h.End()

	pos := h.End()
	for {
		sh, err := ReadHeader(s.r, pos, s.size)
		if errors.Is(err, ErrTruncated) {
			f.Torn = true
			return nil
		}
		if errors.Is(err, ErrInvalid) {
			return fmt.Errorf("looking for the segment at %d: %w", pos, ErrNotMatroska)
		}
		if err != nil {
			return err
		}
		if sh.ID == IDSegment {
			f.Segment = sh
			break
		}
		if (sh.ID != IDVoid && sh.ID != IDCRC32) || sh.Size == UnknownSize {
			return fmt.Errorf("looking for the segment at %d: %w", pos, ErrNotMatroska)
		}
		if sh.End() > s.size {
			f.Torn = true
			return nil
		}
		pos = sh.End()
	}
	segEnd := s.size
	if e := f.Segment.End(); e >= 0 {
		if e < segEnd {
			segEnd = e
		} else if e > segEnd {
			f.Torn = true
		}
	}
	f.End = f.Segment.DataOffset
	return s.segment(f.Segment.DataOffset, segEnd)
}

// segment walks the level 1 elements of the segment payload in [pos, end).
func (s *scanner) segment(pos, end int64) error {
	f := s.f
	for pos < end {
		h, err := ReadHeader(s.r, pos, end)
		switch {
		case errors.Is(err, ErrTruncated):
			f.Torn = true
			return nil
		case errors.Is(err, ErrInvalid):
			pos = s.resync(pos, end)
			continue
		case err != nil:
			return err
		}
		if h.ID == IDCluster {
			next, stop, err := s.cluster(h, end)
			if err != nil || stop {
				return err
			}
			pos = next
			continue
		}
		if h.Size == UnknownSize || h.ID == IDSegment || h.ID == IDEBML {
			pos = s.resync(pos, end)
			continue
		}
		if h.End() > end {
			f.Torn = true
			return nil
		}
		switch h.ID {
		case IDInfo:
			if f.Info.ID == 0 {
				f.Info = h
				if err := s.info(h); err != nil {
					return err
				}
			}
		case IDTracks:
			if f.Tracks.ID == 0 {
				f.Tracks = h
				if err := s.tracks(h); err != nil {
					return err
				}
			}
		case IDSeekHead:
			if f.SeekHead.ID == 0 {
				f.SeekHead = h
			}
		case IDCues:
			if f.Cues.ID == 0 {
				f.Cues = h
			}
		}
		pos = h.End()
		f.End = pos
	}
	return nil
}

// children calls fn for each child of the header element h (read whole, up to
// maxHeaderPayload); an element that is invalid or cut short is left out, as a torn file's
// tail is.
func (s *scanner) children(h Header, fn func(id uint32, data []byte)) error {
	payload, err := ReadPayload(s.r, h, maxHeaderPayload)
	if err != nil {
		if errors.Is(err, ErrInvalid) || errors.Is(err, ErrTruncated) {
			return nil
		}
		return err
	}
	_ = Children(payload, fn)
	return nil
}

func (s *scanner) info(h Header) error {
	return s.children(h, func(id uint32, data []byte) {
		switch id {
		case IDTimestampScale:
			if v, ok := Uint(data); ok && v > 0 {
				s.f.TimestampScale = v
			}
		case IDDuration:
			s.f.Duration = Float(data)
		}
	})
}

func (s *scanner) tracks(h Header) error {
	return s.children(h, func(id uint32, data []byte) {
		if id != IDTrackEntry {
			return
		}
		var t Track
		_ = Children(data, func(id uint32, data []byte) {
			switch id {
			case IDTrackNumber:
				t.Number, _ = Uint(data)
			case IDTrackUID:
				t.UID, _ = Uint(data)
			case IDTrackType:
				t.Type, _ = Uint(data)
			case IDName:
				t.Name = string(trimZero(data))
			case IDCodecID:
				t.CodecID = string(trimZero(data))
			case IDCodecPrivate:
				t.CodecPrivate = append([]byte(nil), data...)
			case IDVideo:
				_ = Children(data, func(id uint32, data []byte) {
					switch id {
					case IDPixelWidth:
						t.Width, _ = Uint(data)
					case IDPixelHeight:
						t.Height, _ = Uint(data)
					}
				})
			case IDAudio:
				_ = Children(data, func(id uint32, data []byte) {
					switch id {
					case IDChannels:
						t.Channels, _ = Uint(data)
					case IDSampling:
						t.SamplingFrequency = Float(data)
					}
				})
			}
		})
		s.f.TrackList = append(s.f.TrackList, t)
	})
}

// IsLevel1 reports whether an ID is a Segment child other than Void and CRC-32: such an
// element ends a Cluster of unknown size.
func IsLevel1(id uint32) bool {
	switch id {
	case IDSeekHead, IDInfo, IDTracks, IDCues, IDCluster, IDTags, IDChapters, IDAttachments,
		IDSegment, IDEBML:
		return true
	}
	return false
}

// cluster walks one cluster; it returns where the next level 1 element starts, or stop when
// the data ends inside the cluster.
func (s *scanner) cluster(ch Header, segEnd int64) (next int64, stop bool, err error) {
	f := s.f
	end := segEnd
	if e := ch.End(); e >= 0 && e < segEnd {
		end = e
	}
	if f.FirstCluster < 0 {
		f.FirstCluster = ch.Offset
	}
	var tc uint64
	haveTC := false
	pos := ch.DataOffset
	for pos < end {
		h, err := ReadHeader(s.r, pos, end)
		switch {
		case errors.Is(err, ErrTruncated):
			if end < segEnd {
				// A known-size cluster whose last child does not fit: skip to its end.
				f.Skipped += end - pos
				return end, false, nil
			}
			f.Torn = true
			return pos, true, nil
		case errors.Is(err, ErrInvalid):
			return s.resync(pos, segEnd), false, nil
		case err != nil:
			return pos, true, err
		}
		if IsLevel1(h.ID) {
			if ch.Size == UnknownSize {
				return pos, false, nil
			}
			// A level 1 element inside a known-size cluster: the size was wrong.
			return s.resync(pos, segEnd), false, nil
		}
		if h.Size == UnknownSize {
			return s.resync(pos, segEnd), false, nil
		}
		if h.End() > end {
			if end < segEnd {
				f.Skipped += end - pos
				return end, false, nil
			}
			f.Torn = true
			return pos, true, nil
		}
		switch h.ID {
		case IDTimestamp:
			payload, err := ReadPayload(s.r, h, 8)
			if err != nil {
				if errors.Is(err, ErrInvalid) || errors.Is(err, ErrTruncated) {
					f.Skipped += h.End() - pos
					break
				}
				return pos, true, err
			}
			v, _ := Uint(payload)
			if !haveTC {
				tc, haveTC = v, true
				f.Clusters++
				if s.v.Cluster != nil {
					c := Cluster{Offset: ch.Offset, DataOffset: ch.DataOffset, Size: ch.Size, Timestamp: tc}
					if err := s.v.Cluster(c); err != nil {
						return pos, true, err
					}
				}
			}
		case IDSimpleBlock, IDBlockGroup:
			if !haveTC {
				f.Skipped += h.End() - pos
				break
			}
			b, ok, err := s.block(h, tc)
			if err != nil {
				return pos, true, err
			}
			if !ok {
				f.Skipped += h.End() - pos
				break
			}
			f.Blocks++
			if s.v.Block != nil {
				if err := s.v.Block(b); err != nil {
					return pos, true, err
				}
			}
		}
		pos = h.End()
		f.End = pos
	}
	return pos, false, nil
}

// block decodes a SimpleBlock or BlockGroup; ok is false when it is malformed.
func (s *scanner) block(h Header, clusterTC uint64) (Block, bool, error) {
	b := Block{ElementID: h.ID, Offset: h.Offset, Size: h.End() - h.Offset, Duration: -1}
	if h.ID == IDSimpleBlock {
		ok, err := s.blockHeader(&b, h.DataOffset, h.Size, clusterTC)
		return b, ok, err
	}
	// Walk the group's children by header so that the block data is never read.
	pos, end := h.DataOffset, h.End()
	haveBlock, haveRef := false, false
	for pos < end {
		ch, err := ReadHeader(s.r, pos, end)
		if err != nil || ch.Size == UnknownSize || ch.End() > end {
			if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTruncated) {
				return b, false, err
			}
			return b, false, nil
		}
		switch ch.ID {
		case IDBlock:
			ok, err := s.blockHeader(&b, ch.DataOffset, ch.Size, clusterTC)
			if err != nil || !ok {
				return b, false, err
			}
			haveBlock = true
		case IDBlockDuration:
			if p, err := ReadPayload(s.r, ch, 8); err == nil {
				v, _ := Uint(p)
				if v <= math.MaxInt64 {
					b.Duration = int64(v)
				}
			}
		case IDReferenceBlock:
			haveRef = true
		}
		pos = ch.End()
	}
	b.Keyframe = !haveRef
	return b, haveBlock, nil
}

// blockHeader decodes the track number, relative timestamp and flags of a (Simple)Block
// payload at off.
func (s *scanner) blockHeader(b *Block, off, size int64, clusterTC uint64) (bool, error) {
	var buf [11]byte
	n := min(size, int64(len(buf)))
	m, err := s.r.ReadAt(buf[:n], off)
	if m < int(n) {
		if err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("reading block header at %d: %w", off, err)
		}
		return false, nil
	}
	track, tl, err := ParseVint(buf[:n])
	if err != nil || track == 0 || int64(tl)+3 > size {
		return false, nil
	}
	rel := int16(binary.BigEndian.Uint16(buf[tl:]))
	flags := buf[tl+2]
	if clusterTC > math.MaxInt64/2 {
		return false, nil
	}
	b.Track = track
	b.Timestamp = int64(clusterTC) + int64(rel)
	b.Lacing = (flags >> 1) & 3
	if b.ElementID == IDSimpleBlock {
		b.Keyframe = flags&0x80 != 0
	}
	b.DataOffset = off + int64(tl) + 3
	b.DataSize = size - int64(tl) - 3
	return true, nil
}

// resync looks for the next Cluster after a bad byte at pos and counts what it skips.
func (s *scanner) resync(pos, end int64) int64 {
	next := s.findCluster(pos+1, end)
	s.f.Skipped += next - pos
	return next
}

// findCluster returns the offset of the next plausible Cluster header in [from, end), or end.
func (s *scanner) findCluster(from, end int64) int64 {
	const chunk = 64 << 10
	buf := make([]byte, chunk+3)
	for off := from; off < end; off += chunk {
		n := min(int64(len(buf)), end-off)
		m, _ := s.r.ReadAt(buf[:n], off)
		for i := 0; i+3 < m; i++ {
			if buf[i] != 0x1F || buf[i+1] != 0x43 || buf[i+2] != 0xB6 || buf[i+3] != 0x75 {
				continue
			}
			cand := off + int64(i)
			if s.plausibleCluster(cand, end) {
				return cand
			}
		}
		if int64(m) < n {
			break
		}
	}
	return end
}

// plausibleCluster checks that a Cluster header at off is followed by a Timestamp.
func (s *scanner) plausibleCluster(off, end int64) bool {
	h, err := ReadHeader(s.r, off, end)
	if err != nil || h.ID != IDCluster {
		return false
	}
	t, err := ReadHeader(s.r, h.DataOffset, end)
	return err == nil && t.ID == IDTimestamp && t.Size >= 0 && t.Size <= 8
}

// Float decodes an EBML float payload (4 or 8 bytes; 0 otherwise).
func Float(b []byte) float64 {
	switch len(b) {
	case 4:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b)))
	case 8:
		return math.Float64frombits(binary.BigEndian.Uint64(b))
	}
	return 0
}

func trimZero(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// cachedReader keeps one window of the underlying reader so that the many small header
// reads of a scan do not each become a system call.
type cachedReader struct {
	r     io.ReaderAt
	buf   []byte
	start int64
	n     int
}

func newCachedReader(r io.ReaderAt, size int) *cachedReader {
	return &cachedReader{r: r, buf: make([]byte, size), start: -1}
}

func (c *cachedReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("reading at %d: negative offset", off)
	}
	if len(p) > len(c.buf)/2 {
		return c.r.ReadAt(p, off)
	}
	if c.start < 0 || off < c.start || off+int64(len(p)) > c.start+int64(c.n) {
		n, err := c.r.ReadAt(c.buf, off)
		if n == 0 && err != nil {
			c.start, c.n = -1, 0
			return 0, err
		}
		c.start, c.n = off, n
	}
	k := copy(p, c.buf[off-c.start:c.n])
	if k < len(p) {
		return k, io.EOF
	}
	return k, nil
}

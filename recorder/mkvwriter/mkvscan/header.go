// Package mkvscan reads the element structure of Matroska and WebM files leniently: it accepts
// unknown-size Segments and Clusters, stops cleanly at a truncated element, and steps over
// garbage to the next Cluster, so that files left behind by a crash can be read back. The
// writer's Repair reads files with it, and the uploader follows a file that is still being
// written with its element headers (ParseHeader, IsLevel1).
package mkvscan

import (
	"errors"
	"fmt"
	"io"
)

// Element IDs used by the scanner, the writer and the uploader, with their length marker bits kept.
const (
	IDEBML           = 0x1A45DFA3
	IDDocType        = 0x4282
	IDSegment        = 0x18538067
	IDSeekHead       = 0x114D9B74
	IDInfo           = 0x1549A966
	IDTimestampScale = 0x2AD7B1
	IDDuration       = 0x4489
	IDTracks         = 0x1654AE6B
	IDTrackEntry     = 0xAE
	IDTrackNumber    = 0xD7
	IDTrackUID       = 0x73C5
	IDTrackType      = 0x83
	IDName           = 0x536E
	IDCodecID        = 0x86
	IDCodecPrivate   = 0x63A2
	IDVideo          = 0xE0
	IDPixelWidth     = 0xB0
	IDPixelHeight    = 0xBA
	IDAudio          = 0xE1
	IDChannels       = 0x9F
	IDSampling       = 0xB5
	IDCluster        = 0x1F43B675
	IDTimestamp      = 0xE7
	IDSimpleBlock    = 0xA3
	IDBlockGroup     = 0xA0
	IDBlock          = 0xA1
	IDBlockDuration  = 0x9B
	IDReferenceBlock = 0xFB
	IDCues           = 0x1C53BB6B
	IDTags           = 0x1254C367
	IDChapters       = 0x1043A770
	IDAttachments    = 0x1941A469
	IDVoid           = 0xEC
	IDCRC32          = 0xBF
)

// UnknownSize is the Size of an element whose size field says "unknown".
const UnknownSize int64 = -1

// maxSize bounds element sizes (256 TiB); anything larger is taken for garbage.
const maxSize = 1 << 48

// ErrTruncated means that the data ends inside an element header.
var ErrTruncated = errors.New("data ends inside an element")

// ErrInvalid means that the bytes at a position are not an EBML element header.
var ErrInvalid = errors.New("invalid ebml element header")

// Header is the ID and size of one EBML element.
type Header struct {
	ID uint32
	// Offset is where the element's ID starts.
	Offset int64
	// DataOffset is where its payload starts.
	DataOffset int64
	// Size of the payload, or UnknownSize.
	Size int64
	// SizeLen is the length in bytes of the size field.
	SizeLen int
}

// End returns where the element ends, or -1 when its size is unknown.
func (h Header) End() int64 {
	if h.Size == UnknownSize {
		return -1
	}
	return h.DataOffset + h.Size
}

// ParseHeader decodes an element header at the start of b.
func ParseHeader(b []byte) (id uint32, size int64, n int, sizeLen int, err error) {
	if len(b) == 0 {
		return 0, 0, 0, 0, ErrTruncated
	}
	idLen := vintLen(b[0])
	if idLen == 0 || idLen > 4 {
		return 0, 0, 0, 0, ErrInvalid
	}
	if len(b) < idLen {
		return 0, 0, 0, 0, ErrTruncated
	}
	var raw uint32
	for _, c := range b[:idLen] {
		raw = raw<<8 | uint32(c)
	}
	value := raw &^ (uint32(0x80) << (8 * (idLen - 1)))
	allOnes := uint32(1)<<(7*idLen) - 1
	if value == 0 || value == allOnes {
		return 0, 0, 0, 0, ErrInvalid
	}
	v, sl, err := ParseVint(b[idLen:])
	if err != nil {
		return 0, 0, 0, 0, err
	}
	size = int64(v)
	if v == vintUnknown(sl) {
		size = UnknownSize
	} else if v >= maxSize {
		return 0, 0, 0, 0, ErrInvalid
	}
	return raw, size, idLen + sl, sl, nil
}

// ParseVint decodes an EBML variable-length unsigned integer (marker bit removed).
func ParseVint(b []byte) (v uint64, n int, err error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	n = vintLen(b[0])
	if n == 0 {
		return 0, 0, ErrInvalid
	}
	if len(b) < n {
		return 0, 0, ErrTruncated
	}
	v = uint64(b[0]) & (0xFF >> n)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n, nil
}

// vintUnknown is the all-ones value of an n-byte vint, which marks an unknown size.
func vintUnknown(n int) uint64 { return uint64(1)<<(7*n) - 1 }

// vintLen returns the length a vint's first byte announces, or 0 if it announces none.
func vintLen(c byte) int {
	for i := 0; i < 8; i++ {
		if c&(0x80>>i) != 0 {
			return i + 1
		}
	}
	return 0
}

// ReadHeader reads the element header at off; the element may not start at or after end.
// It returns ErrTruncated when fewer bytes than the header needs lie before end.
func ReadHeader(r io.ReaderAt, off, end int64) (Header, error) {
	var b [12]byte
	n := end - off
	if n <= 0 {
		return Header{}, ErrTruncated
	}
	if n > int64(len(b)) {
		n = int64(len(b))
	}
	m, err := r.ReadAt(b[:n], off)
	if m < int(n) && err != nil && !errors.Is(err, io.EOF) {
		return Header{}, fmt.Errorf("reading element header at %d: %w", off, err)
	}
	id, size, hl, sl, err := ParseHeader(b[:m])
	if err != nil {
		return Header{}, err
	}
	return Header{ID: id, Offset: off, DataOffset: off + int64(hl), Size: size, SizeLen: sl}, nil
}

// ReadPayload reads the payload of a known-size element of at most limit bytes.
func ReadPayload(r io.ReaderAt, h Header, limit int64) ([]byte, error) {
	if h.Size == UnknownSize || h.Size > limit {
		return nil, fmt.Errorf("reading element %x of size %d: %w", h.ID, h.Size, ErrInvalid)
	}
	b := make([]byte, h.Size)
	n, err := r.ReadAt(b, h.DataOffset)
	if n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = ErrTruncated
		}
		return nil, fmt.Errorf("reading element %x at %d: %w", h.ID, h.Offset, err)
	}
	return b, nil
}

// Children iterates over the child elements of a payload held in memory and calls fn with
// each child's ID and payload. It stops at the first malformed or truncated child.
func Children(payload []byte, fn func(id uint32, data []byte)) error {
	for len(payload) > 0 {
		id, size, n, _, err := ParseHeader(payload)
		if err != nil {
			return err
		}
		if size == UnknownSize || size > int64(len(payload)-n) {
			return ErrTruncated
		}
		fn(id, payload[n:n+int(size)])
		payload = payload[n+int(size):]
	}
	return nil
}

// Uint decodes an EBML unsigned integer payload (up to 8 bytes).
func Uint(b []byte) (uint64, bool) {
	if len(b) > 8 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, true
}

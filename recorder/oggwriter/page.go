package oggwriter

import (
	"bytes"
	"encoding/binary"
)

// Ogg page layout (RFC 3533 §6).
const (
	pageHeaderSize = 27
	maxSegments    = 255
	// MaxPageSize is the largest possible page: header, full segment table, 255*255 bytes.
	MaxPageSize = pageHeaderSize + maxSegments + maxSegments*255

	flagContinued = 0x01
	flagBOS       = 0x02
	flagEOS       = 0x04

	// noGranule is the granule position of a page on which no packet ends.
	noGranule = -1
)

var capturePattern = []byte("OggS")

// Page is one Ogg page as ParsePage reads it: Repair reads files with it, and the
// uploader follows a file that is still being written page by page. lacing and body
// point into the parsed buffer.
type Page struct {
	flags   byte
	granule int64
	serial  uint32
	seq     uint32
	lacing  []byte
	body    []byte
}

// Size is the number of bytes the page takes in the stream.
func (p *Page) Size() int { return pageHeaderSize + len(p.lacing) + len(p.body) }

// Granule is the page's granule position, where the last packet that ends on it ends
// (for Opus in 48 kHz samples, the pre-skip included); -1 when no packet ends on it.
func (p *Page) Granule() int64 { return p.granule }

// Body is the page's packet data; it points into the bytes parsed.
func (p *Page) Body() []byte { return p.body }

// endsPacket reports whether the last packet data on the page completes a packet.
func (p *Page) endsPacket() bool { return len(p.lacing) > 0 && p.lacing[len(p.lacing)-1] < 255 }

// Packets counts the packets that end on the page.
func (p *Page) Packets() int {
	n := 0
	for _, l := range p.lacing {
		if l < 255 {
			n++
		}
	}
	return n
}

// ParsePage parses the page at the start of b. It returns ErrShortPage when b ends
// before the page does and ErrBadPage when b does not start with a valid page
// (capture pattern, version, checksum).
func ParsePage(b []byte) (Page, error) {
	if len(b) < pageHeaderSize {
		if !bytes.HasPrefix(capturePattern, b[:min(len(b), len(capturePattern))]) {
			return Page{}, ErrBadPage
		}
		return Page{}, ErrShortPage
	}
	if !bytes.Equal(b[:4], capturePattern) || b[4] != 0 || b[5]&^(flagContinued|flagBOS|flagEOS) != 0 {
		return Page{}, ErrBadPage
	}
	nseg := int(b[26])
	if len(b) < pageHeaderSize+nseg {
		return Page{}, ErrShortPage
	}
	lacing := b[pageHeaderSize : pageHeaderSize+nseg]
	bodySize := 0
	for _, l := range lacing {
		bodySize += int(l)
	}
	end := pageHeaderSize + nseg + bodySize
	if len(b) < end {
		return Page{}, ErrShortPage
	}
	c := crcUpdate(0, b[:22])
	c = crcUpdate(c, []byte{0, 0, 0, 0})
	c = crcUpdate(c, b[26:end])
	if c != binary.LittleEndian.Uint32(b[22:26]) {
		return Page{}, ErrBadPage
	}
	return Page{
		flags:   b[5],
		granule: int64(binary.LittleEndian.Uint64(b[6:14])),
		serial:  binary.LittleEndian.Uint32(b[14:18]),
		seq:     binary.LittleEndian.Uint32(b[18:22]),
		lacing:  lacing,
		body:    b[pageHeaderSize+nseg : end],
	}, nil
}

// appendPage appends a complete page with its checksum to dst. len(lacing) must be at
// most 255 and body must be as long as the lacing values say.
func appendPage(dst []byte, flags byte, granule int64, serial, seq uint32, lacing, body []byte) []byte {
	start := len(dst)
	dst = append(dst, capturePattern...)
	dst = append(dst, 0, flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(granule))
	dst = binary.LittleEndian.AppendUint32(dst, serial)
	dst = binary.LittleEndian.AppendUint32(dst, seq)
	dst = append(dst, 0, 0, 0, 0, byte(len(lacing)))
	dst = append(dst, lacing...)
	dst = append(dst, body...)
	binary.LittleEndian.PutUint32(dst[start+22:], crcUpdate(0, dst[start:]))
	return dst
}

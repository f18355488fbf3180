package oggwriter

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Ogg page layout (RFC 3533 §6).
const (
	pageHeaderSize = 27
	maxSegments    = 255
	// maxPageSize is the largest possible page: header, full segment table, 255*255 bytes.
	maxPageSize = pageHeaderSize + maxSegments + maxSegments*255

	flagContinued = 0x01
	flagBOS       = 0x02
	flagEOS       = 0x04

	// noGranule is the granule position of a page on which no packet ends.
	noGranule = -1
)

var capturePattern = []byte("OggS")

// errShortPage and errBadPage are parsePage's verdicts: more bytes could make a page
// (a page cut short at the end of a file), or no number of bytes can.
var (
	errShortPage = errors.New("ogg page cut short")
	errBadPage   = errors.New("not a valid ogg page")
)

// page is one parsed Ogg page. lacing and body point into the parsed buffer.
type page struct {
	flags   byte
	granule int64
	serial  uint32
	seq     uint32
	lacing  []byte
	body    []byte
}

// size is the number of bytes the page takes in the stream.
func (p *page) size() int { return pageHeaderSize + len(p.lacing) + len(p.body) }

// endsPacket reports whether the last packet data on the page completes a packet.
func (p *page) endsPacket() bool { return len(p.lacing) > 0 && p.lacing[len(p.lacing)-1] < 255 }

// completedPackets counts the packets that end on the page.
func (p *page) completedPackets() int {
	n := 0
	for _, l := range p.lacing {
		if l < 255 {
			n++
		}
	}
	return n
}

// parsePage parses the page at the start of b. It returns errShortPage when b ends
// before the page does and errBadPage when b does not start with a valid page
// (capture pattern, version, checksum).
func parsePage(b []byte) (page, error) {
	if len(b) < pageHeaderSize {
		if !bytes.HasPrefix(capturePattern, b[:min(len(b), len(capturePattern))]) {
			return page{}, errBadPage
		}
		return page{}, errShortPage
	}
	if !bytes.Equal(b[:4], capturePattern) || b[4] != 0 || b[5]&^(flagContinued|flagBOS|flagEOS) != 0 {
		return page{}, errBadPage
	}
	nseg := int(b[26])
	if len(b) < pageHeaderSize+nseg {
		return page{}, errShortPage
	}
	lacing := b[pageHeaderSize : pageHeaderSize+nseg]
	bodySize := 0
	for _, l := range lacing {
		bodySize += int(l)
	}
	end := pageHeaderSize + nseg + bodySize
	if len(b) < end {
		return page{}, errShortPage
	}
	c := crcUpdate(0, b[:22])
	c = crcUpdate(c, []byte{0, 0, 0, 0})
	c = crcUpdate(c, b[26:end])
	if c != binary.LittleEndian.Uint32(b[22:26]) {
		return page{}, errBadPage
	}
	return page{
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

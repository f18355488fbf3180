package activity

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
)

// Limits on what the reader accepts: a recording's file is trusted more than network
// input, but a damaged or foreign file must never make it allocate without bound.
const (
	maxPacketBytes = 64 << 10
	maxPackets     = 5_000_000 // 27 hours of 20 ms packets
)

// Packet is one Opus audio packet of an Ogg Opus file, placed on the file's timeline.
type Packet struct {
	// Start and End are where the packet sits on the file's timeline: the pre-skip is
	// already taken away, so 0 is the first sample a player outputs.
	Start, End time.Duration
	// Bytes is the packet's size.
	Bytes int
}

// OpusFile is what ReadOgg found in an Ogg Opus stream.
type OpusFile struct {
	Channels int
	PreSkip  int
	Packets  []Packet
	// Truncated says the stream ended inside a page or packet (a file a crash cut);
	// Packets holds everything before that point.
	Truncated bool
}

// ErrNotOpus is returned for a stream that is not Ogg Opus.
var ErrNotOpus = errors.New("not an ogg opus stream")

// ReadOgg reads an Ogg Opus stream (RFC 7845) page by page and returns its audio packets
// with their times. Times come from the pages' granule positions: the packets that end on
// a page are laid out backwards from the page's granule position, so a jump in granule
// positions (a gap a writer left) stays a gap. Only the first logical stream is read.
func ReadOgg(r io.Reader) (*OpusFile, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		out     OpusFile
		serial  uint32
		started bool
		partial []byte // packet continued from the previous page
		headers int    // OpusHead and OpusTags seen
		hdr     [27]byte
		seg     [255]byte
	)
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			out.Truncated = true
			break
		}
		if !bytes.Equal(hdr[:4], []byte("OggS")) || hdr[4] != 0 {
			if !started {
				return nil, fmt.Errorf("%w: no ogg page at the start", ErrNotOpus)
			}
			out.Truncated = true
			break
		}
		granule := int64(binary.LittleEndian.Uint64(hdr[6:14]))
		pageSerial := binary.LittleEndian.Uint32(hdr[14:18])
		nseg := int(hdr[26])
		if _, err := io.ReadFull(br, seg[:nseg]); err != nil {
			out.Truncated = true
			break
		}
		bodyLen := 0
		for _, l := range seg[:nseg] {
			bodyLen += int(l)
		}
		body := make([]byte, bodyLen)
		if _, err := io.ReadFull(br, body); err != nil {
			out.Truncated = true
			break
		}
		if !started {
			serial, started = pageSerial, true
		} else if pageSerial != serial {
			continue // another logical stream: not ours
		}
		if hdr[5]&1 == 0 {
			partial = partial[:0] // a page that does not continue a packet
		}
		// Split the body into packets; the last one may continue on the next page.
		var done [][]byte
		off := 0
		for i := 0; i < nseg; i++ {
			l := int(seg[i])
			partial = append(partial, body[off:off+l]...)
			off += l
			if len(partial) > maxPacketBytes {
				return nil, fmt.Errorf("%w: packet larger than %d bytes", ErrNotOpus, maxPacketBytes)
			}
			if l < 255 {
				done = append(done, append([]byte(nil), partial...))
				partial = partial[:0]
			}
		}
		for len(done) > 0 && headers < 2 {
			p := done[0]
			done = done[1:]
			switch headers {
			case 0:
				if len(p) < 19 || !bytes.Equal(p[:8], []byte("OpusHead")) {
					return nil, fmt.Errorf("%w: first packet is not OpusHead", ErrNotOpus)
				}
				out.Channels = int(p[9])
				out.PreSkip = int(binary.LittleEndian.Uint16(p[10:12]))
			case 1:
				if len(p) < 8 || !bytes.Equal(p[:8], []byte("OpusTags")) {
					return nil, fmt.Errorf("%w: second packet is not OpusTags", ErrNotOpus)
				}
			}
			headers++
		}
		if len(done) == 0 {
			continue
		}
		if granule < 0 {
			// No packet may end on a page with granule position -1; be lenient and
			// place them after the previous packet.
			granule = -1
		}
		// Lay the packets that end on this page out backwards from its granule position.
		samples := make([]int64, len(done))
		var sum int64
		for i, p := range done {
			samples[i] = int64(packetSamples(p))
			sum += samples[i]
		}
		start := granule - sum
		if granule < 0 || (len(out.Packets) > 0 && start < opus.DurationToSamples(out.Packets[len(out.Packets)-1].End)+int64(out.PreSkip)) {
			// A missing or backwards granule position: continue after the last packet.
			start = int64(out.PreSkip)
			if n := len(out.Packets); n > 0 {
				start = opus.DurationToSamples(out.Packets[n-1].End) + int64(out.PreSkip)
			}
		}
		for i, p := range done {
			if len(out.Packets) >= maxPackets {
				return nil, fmt.Errorf("%w: more than %d packets", ErrNotOpus, maxPackets)
			}
			end := start + samples[i]
			out.Packets = append(out.Packets, Packet{
				Start: opus.SamplesToDuration(start - int64(out.PreSkip)),
				End:   opus.SamplesToDuration(end - int64(out.PreSkip)),
				Bytes: len(p),
			})
			start = end
		}
	}
	if !started || headers < 1 {
		return nil, fmt.Errorf("%w: no OpusHead", ErrNotOpus)
	}
	return &out, nil
}

// packetSamples is an Opus packet's length in 48 kHz samples from its TOC byte and frame
// count, as players read it; 0 for an empty packet or one longer than an Opus packet can be.
func packetSamples(p []byte) int {
	if n := opus.HeadSamples(p); n <= opus.MaxPacketSamples {
		return n
	}
	return 0
}

// ReadHead reads the OpusHead of an Ogg Opus stream: channel count and pre-skip.
func ReadHead(r io.Reader) (channels, preSkip int, err error) {
	var hdr [27]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil || !bytes.Equal(hdr[:4], []byte("OggS")) {
		return 0, 0, fmt.Errorf("%w: no ogg page at the start", ErrNotOpus)
	}
	seg := make([]byte, hdr[26])
	if _, err := io.ReadFull(r, seg); err != nil || len(seg) == 0 {
		return 0, 0, fmt.Errorf("%w: short first page", ErrNotOpus)
	}
	p := make([]byte, seg[0])
	if _, err := io.ReadFull(r, p); err != nil || len(p) < 19 || !bytes.Equal(p[:8], []byte("OpusHead")) {
		return 0, 0, fmt.Errorf("%w: first packet is not OpusHead", ErrNotOpus)
	}
	return int(p[9]), int(binary.LittleEndian.Uint16(p[10:12])), nil
}

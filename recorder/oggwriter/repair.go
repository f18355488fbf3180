package oggwriter

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
)

// RepairReport says what Repair found and did.
type RepairReport struct {
	// Pages is the number of complete pages of the stream kept in the file. Complete
	// pages of other streams (another serial number) are kept too but not counted.
	Pages int
	// TruncatedBytes were cut from the end: a page torn by a crash, or bytes that are
	// no page at all.
	TruncatedBytes int64
	// CorruptBytes between complete pages are no valid page (a damaged page in the
	// middle). They are left in place, since cutting them would move every later page;
	// players skip them.
	CorruptBytes int64
	// Granule is the granule position of the last page on which an audio packet ends
	// (0 if there is none).
	Granule int64
	// PreSkip is the pre-skip of the identification header.
	PreSkip uint16
	// Duration is the playable duration: Granule minus PreSkip, at 48 kHz.
	Duration time.Duration
	// HadEOS is true if the stream already ended with an end-of-stream page.
	HadEOS bool
	// AppendedTags is true if the comment header was missing and Repair appended one.
	AppendedTags bool
	// AppendedEOS is true if Repair appended an end-of-stream page (with a silence
	// packet that the page's granule position trims away).
	AppendedEOS bool
}

// Repair makes an Ogg Opus file left by a crash whole again. It keeps every complete
// page, cuts what follows the last one (a torn page), appends a comment header if the
// crash came before it was written, and appends an end-of-stream page if the stream has
// none: one silence packet (2.5 ms unless the pre-skip needs more) with the last granule
// position, so that players trim it and the duration stays that of the complete pages
// (or, for a stream shorter than its pre-skip, the silence that Writer.Close adds to such
// a stream). A file that already ends with an
// end-of-stream page and nothing after it is not written to. A file without a complete
// identification header at its start is left alone and ErrNotOpus returned.
func Repair(path string) (RepairReport, error) {
	var r RepairReport
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return r, fmt.Errorf("open ogg file to repair: %w", err)
	}
	info, err := f.Stat()
	if err == nil {
		r, err = repair(f, info.Size())
	}
	if cerr := f.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close repaired ogg file: %w", cerr))
	}
	if err != nil {
		return r, fmt.Errorf("repair %s: %w", path, err)
	}
	return r, nil
}

// repairFile is what repair needs of a file: *os.File, or a file in memory in tests.
type repairFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
}

// scanState is what repair learns from the pages of a file.
type scanState struct {
	serial  uint32
	lastSeq uint32
	last    Page // the last valid page of the stream (lacing and body not kept)
	packets int  // packets completed so far
	// head holds the first bytes of the packet under way (what its duration is read
	// from), headN how many of them there are.
	head  [2]byte
	headN int
	// pcmStart is where players take the stream to start (see Writer.pcmStart).
	pcmStart int64
	pcmKnown bool
}

func repair(f repairFile, size int64) (RepairReport, error) {
	var r RepairReport
	buf := make([]byte, MaxPageSize)
	var st scanState
	var off, goodEnd int64
	for off < size {
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return r, fmt.Errorf("read at %d: %w", off, err)
		}
		b := buf[:n]
		p, perr := ParsePage(b)
		if perr == nil && r.Pages > 0 && p.serial != st.serial {
			// A complete page of another stream: not ours to judge, and not to lose.
			r.CorruptBytes += off - goodEnd
			off += int64(p.Size())
			goodEnd = off
			continue
		}
		if perr == nil {
			if r.Pages == 0 {
				// The identification header, alone on the first page (RFC 7845 §3).
				_, preSkip, ok := ParseOpusHead(p.body)
				if off != 0 || p.flags&flagBOS == 0 || p.Packets() != 1 || !p.endsPacket() || !ok {
					return r, ErrNotOpus
				}
				st.serial, r.PreSkip = p.serial, preSkip
			}
			r.CorruptBytes += off - goodEnd
			st.take(&r, p)
			off += int64(p.Size())
			goodEnd = off
			continue
		}
		if r.Pages == 0 {
			return r, ErrNotOpus
		}
		// No page here: look for the next capture pattern. A page is never longer
		// than buf, so if none starts in buf, none starts before its last 3 bytes.
		i := bytes.Index(b[1:], capturePattern)
		switch {
		case i >= 0:
			off += 1 + int64(i)
		case int64(n) < int64(len(buf)) || off+int64(n) >= size:
			off = size
		default:
			off += int64(n) - int64(len(capturePattern)-1)
		}
	}
	if r.Pages == 0 {
		return r, ErrNotOpus
	}
	r.Duration = opus.SamplesToDuration(max(0, r.Granule-int64(r.PreSkip)))
	r.HadEOS = st.last.flags&flagEOS != 0
	r.TruncatedBytes = size - goodEnd

	var tail []byte
	seq := st.lastSeq + 1
	if st.packets < 2 {
		if st.last.seq != 0 {
			// The comment header began on a page and was cut off: nothing can follow it
			// without breaking the packet, and no complete page may be lost.
			return r, fmt.Errorf("%w: comment header incomplete", ErrNotOpus)
		}
		tail = appendPage(tail, 0, 0, st.serial, seq, []byte{byte(len(minimalTags()))}, minimalTags())
		seq++
		r.AppendedTags = true
	}
	if !r.HadEOS {
		// Like Writer.Close: a page with a silence packet that its granule position
		// trims away, or with the silence that takes a stream shorter than its pre-skip
		// to its start plus the pre-skip (see Writer.padToPreSkip).
		var lacing, body []byte
		granule := endGranule(r.Granule, r.PreSkip)
		if target := st.pcmStart + int64(r.PreSkip); st.pcmKnown && r.Granule < target {
			for g := r.Granule; g < target && len(lacing) < maxSegments; {
				n := len(body)
				body = opus.AppendSilence(body, target-g)
				lacing = append(lacing, byte(len(body)-n))
				samples, _ := opus.Samples(body[n:])
				g += int64(samples)
			}
			granule = target
		} else {
			body = appendEndPacket(nil, max(0, r.Granule-int64(r.PreSkip)), r.PreSkip)
			lacing = []byte{byte(len(body))}
		}
		tail = appendPage(tail, flagEOS, granule, st.serial, seq, lacing, body)
		r.AppendedEOS = true
	}
	if r.TruncatedBytes == 0 && len(tail) == 0 {
		return r, nil
	}
	if r.TruncatedBytes > 0 {
		if err := f.Truncate(goodEnd); err != nil {
			return r, fmt.Errorf("truncate torn page: %w", err)
		}
	}
	if len(tail) > 0 {
		if _, err := f.WriteAt(tail, goodEnd); err != nil {
			return r, fmt.Errorf("append end of stream: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return r, fmt.Errorf("sync repaired file: %w", err)
	}
	return r, nil
}

// take records a valid page of the stream.
func (st *scanState) take(r *RepairReport, p Page) {
	r.Pages++
	if !st.pcmKnown {
		st.findStart(p)
	}
	ends := p.Packets()
	if st.packets+ends > 2 && p.granule != noGranule {
		// An audio packet ends on this page (the first two packets are the headers).
		r.Granule = p.granule
	}
	st.packets += ends
	st.lastSeq = p.seq
	st.last = Page{flags: p.flags, granule: p.granule, serial: p.serial, seq: p.seq}
}

// findStart reads the durations of the audio packets that end on a page, and if there
// are any, takes the stream's start from it (RFC 7845 §4.2): its granule position minus
// those durations. It must see every page up to the first such one.
func (st *scanState) findStart(p Page) {
	if p.flags&flagContinued == 0 {
		st.headN = 0 // a packet under way on the previous page was never finished
	}
	var samples int64
	packets := st.packets
	body := p.body
	for _, l := range p.lacing {
		seg := body[:l]
		body = body[l:]
		for _, b := range seg {
			if st.headN == len(st.head) {
				break
			}
			st.head[st.headN] = b
			st.headN++
		}
		if l == 255 {
			continue
		}
		if packets >= 2 { // the first two packets are the headers
			samples += int64(opus.HeadSamples(st.head[:st.headN]))
		}
		packets++
		st.headN = 0
	}
	if samples > 0 && p.granule != noGranule {
		st.pcmStart, st.pcmKnown = p.granule-samples, true
	}
}

// minimalTags is a comment header with the default vendor and no comments.
func minimalTags() []byte { return appendOpusTags(nil, DefaultVendor, nil) }

package oggwriter

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// Writer writes the Opus frames of one track into an Ogg Opus stream. It implements
// media.Writer. It is not safe for concurrent use: one goroutine owns a track's writer.
type Writer struct {
	w    io.Writer
	f    *os.File // the file New opened, nil for NewWith
	path string
	cfg  config

	seq uint32
	// The page being assembled: its segment table, its body, and how many packets
	// start and end on it. Reused from page to page.
	lacing      [maxSegments]byte
	nlacing     int
	body        []byte
	pagePackets int
	pageEnds    int
	pageSamples int64 // audio samples of the packets that end on the page
	continued   bool  // the page starts with the rest of a packet from the previous page
	granule     int64 // granule position of the last complete packet
	// pcmStart is where players take the stream to start (RFC 7845 §4.2): the granule
	// position of the first page on which audio packets end, minus their samples. Known
	// once that page is written.
	pcmStart int64
	pcmKnown bool
	out      []byte // the page as written, reused

	end      int64 // end of the last frame in samples from the start of the file
	prevTOC  byte
	havePrev bool
	scratch  [14]byte // a gap-filling or end packet

	err    error // a write failed: the stream's end is unknown, refuse everything
	closed bool
}

var _ media.Writer = (*Writer)(nil)

// New creates the file at path (it must not exist yet; mode 0644), writes the Ogg Opus
// headers and returns a writer that owns the file: Close syncs and closes it. If the
// headers cannot be written, New closes and removes the file.
func New(path string, p media.TrackParams, opts ...Option) (*Writer, error) {
	cfg, err := newConfig(p, opts)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create ogg file: %w", err)
	}
	w := newWriter(f, cfg)
	w.f, w.path = f, path
	if err := w.writeHeaders(); err != nil {
		return nil, errors.Join(err, f.Close(), os.Remove(path))
	}
	if cfg.syncOnFlush {
		if err := errors.Join(f.Sync(), syncDir(filepath.Dir(path))); err != nil {
			return nil, errors.Join(fmt.Errorf("sync new ogg file: %w", err), f.Close(), os.Remove(path))
		}
	}
	return w, nil
}

// NewWith writes the Ogg Opus headers to w and returns a writer of the stream. Close
// writes the last page but does not close w.
func NewWith(w io.Writer, p media.TrackParams, opts ...Option) (*Writer, error) {
	cfg, err := newConfig(p, opts)
	if err != nil {
		return nil, err
	}
	wr := newWriter(w, cfg)
	if err := wr.writeHeaders(); err != nil {
		return nil, err
	}
	return wr, nil
}

func newWriter(w io.Writer, cfg config) *Writer {
	if !cfg.serialSet {
		cfg.serial = rand.Uint32()
	}
	return &Writer{
		w:    w,
		cfg:  cfg,
		body: make([]byte, 0, cfg.maxPageBody+opus.MaxFrameBytes*6),
		out:  make([]byte, 0, pageHeaderSize+maxSegments+cfg.maxPageBody+opus.MaxFrameBytes*6),
	}
}

// writeHeaders writes the identification and comment headers, each on its own page
// (RFC 7845 §3).
func (w *Writer) writeHeaders() error {
	if err := w.addPacket(appendOpusHead(nil, w.cfg.channels, w.cfg.preSkip), 0, 0); err != nil {
		return err
	}
	if err := w.emit(false); err != nil {
		return err
	}
	if err := w.addPacket(appendOpusTags(nil, w.cfg.vendor, w.cfg.comments), 0, 0); err != nil {
		return err
	}
	return w.emit(false)
}

// WriteFrame appends one Opus packet. Its granule position is its end on the file's
// timeline: PTS plus the packet's duration from its TOC, in 48 kHz samples, plus the
// pre-skip. A frame that is no valid Opus packet (ErrInvalidPacket), starts before the
// previous one ends (ErrBackwards) or after too large a gap (ErrGapTooLarge) is dropped
// with an error wrapping that sentinel, and the writer stays usable. A gap is written
// as the gap policy says. The packet goes to the file when its page is full or on Flush.
func (w *Writer) WriteFrame(f media.Frame) error {
	if w.closed {
		return media.ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	n, err := opus.Samples(f.Data)
	if err != nil {
		return fmt.Errorf("write opus frame at %v: %w", f.PTS, err)
	}
	if f.Duration != 0 && opus.DurationToSamples(f.Duration) != int64(n) {
		return fmt.Errorf("write opus frame at %v: %w: duration %v but the toc says %v",
			f.PTS, ErrInvalidPacket, f.Duration, opus.SamplesToDuration(int64(n)))
	}
	if f.PTS < 0 {
		return fmt.Errorf("write opus frame at %v: %w: before the start of the file", f.PTS, ErrBackwards)
	}
	start := opus.DurationToSamples(f.PTS)
	if start < w.end {
		return fmt.Errorf("write opus frame at %v: %w at %v", f.PTS, ErrBackwards, opus.SamplesToDuration(w.end))
	}
	gap := start - w.end
	if w.cfg.maxGap > 0 && gap > opus.DurationToSamples(w.cfg.maxGap) {
		return fmt.Errorf("write opus frame at %v: %w: %v after the previous frame, more than %v",
			f.PTS, ErrGapTooLarge, opus.SamplesToDuration(gap), w.cfg.maxGap)
	}
	if gap > 0 && w.cfg.gap != GapKeep {
		if err := w.fillGap(start); err != nil {
			return err
		}
	}
	if err := w.addPacket(f.Data, int64(n), start+int64(n)+int64(w.cfg.preSkip)); err != nil {
		return err
	}
	w.end = start + int64(n)
	w.prevTOC, w.havePrev = f.Data[0], true
	return nil
}

// fillGap writes packets from the end of the previous frame up to start: 20 ms ones,
// then shorter ones down to 2.5 ms. A rest under 2.5 ms stays a jump in the granule
// positions; no gap from packet loss or DTX is that short (RFC 7845 §4.1).
func (w *Writer) fillGap(start int64) error {
	for size := int64(960); size >= 120; size /= 2 {
		for start-w.end >= size {
			var p []byte
			if w.cfg.gap == GapSilence {
				p = opus.AppendSilence(w.scratch[:0], size)
			} else {
				p = opus.AppendLoss(w.scratch[:0], int(size), w.prevTOC, w.havePrev)
			}
			if err := w.addPacket(p, size, w.end+size+int64(w.cfg.preSkip)); err != nil {
				return err
			}
			w.end += size
		}
	}
	return nil
}

// addPacket puts a packet on the current page, first emitting that page if the packet
// would not fit within the limits, and splitting the packet across pages if its
// segment table alone is longer than a page's. samples is the packet's audio (0 for the
// headers).
func (w *Writer) addPacket(p []byte, samples, granule int64) error {
	need := len(p)/255 + 1
	if w.nlacing > 0 && (w.nlacing+need > maxSegments ||
		len(w.body)+len(p) > w.cfg.maxPageBody || w.pagePackets >= w.cfg.maxPagePackets) {
		if err := w.emit(false); err != nil {
			return err
		}
	}
	w.pagePackets++
	for {
		room := maxSegments - w.nlacing
		full := len(p) / 255
		if full < room {
			for i := range full {
				w.lacing[w.nlacing+i] = 255
			}
			w.lacing[w.nlacing+full] = byte(len(p) % 255)
			w.nlacing += full + 1
			w.body = append(w.body, p...)
			w.pageEnds++
			w.pageSamples += samples
			w.granule = granule
			return nil
		}
		// The rest of the packet needs more segments than the page has left: fill the
		// page and carry on with the rest on the next one.
		for i := range room {
			w.lacing[w.nlacing+i] = 255
		}
		w.nlacing = maxSegments
		w.body = append(w.body, p[:room*255]...)
		p = p[room*255:]
		if err := w.emit(false); err != nil {
			return err
		}
		w.continued = true
		w.pagePackets = 1
	}
}

// emit writes the current page and starts the next. A page on which no packet ends
// gets granule position -1; an empty last page gets the last granule position.
func (w *Writer) emit(eos bool) error {
	var flags byte
	if w.continued {
		flags |= flagContinued
	}
	if w.seq == 0 {
		flags |= flagBOS
	}
	if eos {
		flags |= flagEOS
	}
	granule := w.granule
	if w.pageEnds == 0 && w.nlacing > 0 {
		granule = noGranule
	}
	if !w.pcmKnown && w.pageSamples > 0 {
		w.pcmStart, w.pcmKnown = granule-w.pageSamples, true
	}
	w.out = appendPage(w.out[:0], flags, granule, w.cfg.serial, w.seq, w.lacing[:w.nlacing], w.body)
	seq := w.seq
	w.seq++
	w.nlacing, w.body, w.pagePackets, w.pageEnds, w.pageSamples, w.continued = 0, w.body[:0], 0, 0, 0, false
	if _, err := w.w.Write(w.out); err != nil {
		w.err = fmt.Errorf("write ogg page %d: %w: %w", seq, media.ErrWrite, err)
		return w.err
	}
	return nil
}

// Flush writes the packets buffered so far as a page. After it returns nil the stream
// ends on a page boundary and is playable up to the last frame written; with
// WithSyncOnFlush it is on disk as well; without it, the kernel is asked to start writing
// a file New opened to disk (media.StartWriteback). A stream given to NewWith that has a
// Flush() error method (a *bufio.Writer) is flushed too.
func (w *Writer) Flush() error {
	if w.closed {
		return media.ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	if w.nlacing > 0 {
		if err := w.emit(false); err != nil {
			return err
		}
	}
	if err := w.flushStream(); err != nil {
		w.err = fmt.Errorf("flush ogg writer: %w: %w", media.ErrWrite, err)
		return w.err
	}
	if w.cfg.syncOnFlush {
		if s, ok := w.w.(interface{ Sync() error }); ok {
			if err := s.Sync(); err != nil {
				// After a failed fsync the kernel may have dropped the pages it could not
				// write: what the file holds is unknown.
				w.err = fmt.Errorf("sync ogg file: %w: %w", media.ErrWrite, err)
				return w.err
			}
		}
	} else {
		// The fsync at Close then finds little left to write (see StartWriteback).
		media.StartWriteback(w.f)
	}
	return nil
}

func (w *Writer) flushStream() error {
	if fl, ok := w.w.(interface{ Flush() error }); ok {
		return fl.Flush()
	}
	return nil
}

// Close writes the last page with the end-of-stream flag (if nothing is buffered, a page
// with a 2.5 ms silence packet that its granule position trims away) and, if the writer owns the file, syncs and closes it. It is idempotent:
// later calls return nil. WriteFrame and Flush after Close return media.ErrClosed.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	var errs []error
	if w.err != nil {
		errs = append(errs, w.err)
	} else {
		w.padToPreSkip()
		if w.nlacing == 0 {
			w.addEndPacket()
		}
		if err := w.emit(true); err != nil {
			errs = append(errs, err)
		} else if err := w.flushStream(); err != nil {
			errs = append(errs, fmt.Errorf("flush ogg writer: %w: %w", media.ErrWrite, err))
		}
	}
	if w.f != nil {
		if w.err == nil {
			if err := w.f.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("sync ogg file: %w: %w", media.ErrWrite, err))
			}
		}
		if err := w.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ogg file: %w", err))
		}
		if err := syncDir(filepath.Dir(w.path)); err != nil {
			errs = append(errs, fmt.Errorf("sync directory of ogg file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// addEndPacket puts a packet on an empty last page: checkers refuse an end-of-stream
// page on which no packet ends (oggz-validate), or one with a granule position but no
// packet (opusinfo). The packet is silence, 2.5 ms long unless the stream needs more to
// reach its pre-skip, and the page's granule position stays the last one, so players
// trim the packet away (RFC 7845 §4.5) and the file keeps its exact duration.
func (w *Writer) addEndPacket() {
	// The page is empty, so the packet fits and addPacket writes nothing.
	p := appendEndPacket(w.scratch[:0], w.end, w.cfg.preSkip)
	n, _ := opus.Samples(p)
	_ = w.addPacket(p, int64(n), endGranule(w.granule, w.cfg.preSkip))
}

// padToPreSkip lengthens a stream that holds less audio than its pre-skip: players
// refuse a stream whose last granule position is less than the pre-skip after its start
// (opusfile fails with OP_EBADTIMESTAMP, opusdec cannot open it, opusinfo reports a
// negative duration). Every sample of such a stream lies in the pre-skip, which players
// drop, so nothing audible is lost: silence packets take the stream to its start plus
// the pre-skip, and the last one's granule position trims what they hold beyond it (a
// stream of one 2.5 ms packet and a pre-skip of 6.5 ms ends at 6.5 ms, with 0 samples to
// play). A stream without audio is left to addEndPacket.
func (w *Writer) padToPreSkip() {
	start := w.pcmStart
	if !w.pcmKnown {
		if w.pageSamples == 0 {
			return
		}
		// The first audio page is the one being closed; players compute its start the
		// same way once it is written.
		start = w.granule - w.pageSamples
	}
	target := start + int64(w.cfg.preSkip)
	for w.granule < target {
		p := opus.AppendSilence(w.scratch[:0], target-w.granule)
		n, _ := opus.Samples(p)
		if err := w.addPacket(p, int64(n), min(w.granule+int64(n), target)); err != nil {
			return // w.err is set; Close reports it
		}
	}
}

// endGranule is the granule position of an end packet after a last granule position:
// the same, but not before the pre-skip in a stream without audio.
func endGranule(last int64, preSkip uint16) int64 { return max(last, int64(preSkip)) }

// Duration returns the end of the last frame written on the file's timeline: the
// duration the file will have.
func (w *Writer) Duration() time.Duration { return opus.SamplesToDuration(w.end) }

// syncDir syncs a directory so that a file created in it survives a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

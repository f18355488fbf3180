package mkvwriter

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// Writer writes one track to a WebM or Matroska file. It implements media.Writer. It is not
// safe for concurrent use: one goroutine owns a track's writer.
type Writer struct {
	cfg      config
	params   media.TrackParams
	name     string // the codec's, for messages
	codec    codecAdapter
	docType  string
	video    bool
	trackUID uint64

	file *os.File // set when the writer owns the file (New)
	mux  *muxer

	started bool
	closed  bool
	err     error // first I/O error; the file is in an unknown state after it

	lastPTS  time.Duration
	interval time.Duration // last plausible frame interval, for the duration of the last frame
	lastDur  time.Duration // Frame.Duration of the last frame
	width    int
	height   int
	frames   int
}

// New creates the file at path (it must not exist yet) and returns a writer of codec c that
// owns it. The header is written with the first frame, which for video must be a key frame:
// its bitstream gives the size and codec configuration, so TrackParams.Width and Height are
// not needed (the bitstream wins where they differ).
func New(path string, c Codec, p media.TrackParams, opts ...Option) (*Writer, error) {
	if _, err := c.newAdapter(p); err != nil {
		return nil, fmt.Errorf("creating writer for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating writer: %w", err)
	}
	w, err := NewWith(f, c, p, opts...)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("creating writer for %s: %w", path, err), f.Close(), os.Remove(path))
	}
	w.file = f
	return w, nil
}

// NewWith returns a writer of codec c that writes to ws from its current position. Close
// finalises the file by seeking back into it, but does not close ws.
func NewWith(ws io.WriteSeeker, c Codec, p media.TrackParams, opts ...Option) (*Writer, error) {
	if ws == nil {
		return nil, errors.New("creating writer: nil WriteSeeker")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("creating writer: %w", err)
		}
	}
	cfg.maxClusterDuration = max(cfg.maxClusterDuration, cfg.clusterDuration)
	if cfg.date.IsZero() {
		cfg.date = time.Now()
	}
	codec, err := c.newAdapter(p)
	if err != nil {
		return nil, fmt.Errorf("creating writer: %w", err)
	}
	mux, err := newMuxer(ws, cfg.bufferSize)
	if err != nil {
		return nil, fmt.Errorf("creating writer: %w", err)
	}
	return &Writer{
		cfg:      cfg,
		params:   p,
		name:     c.String(),
		codec:    codec,
		docType:  c.docType,
		video:    c.video,
		trackUID: rand.Uint64()>>1 | 1,
		mux:      mux,
	}, nil
}

var _ media.Writer = (*Writer)(nil)

// trackNumber is the number of the only track of the file.
const trackNumber = 1

// WriteFrame appends a frame. A frame refused for what it is (ErrNotKeyframe, ErrBadFrame,
// ErrBadTimestamp, media.ErrNewPart) writes nothing and leaves the writer usable. After an
// I/O error every call returns that error; Repair can save what reached the file.
func (w *Writer) WriteFrame(f media.Frame) error {
	if w.closed {
		return media.ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	if len(f.Data) == 0 {
		return fmt.Errorf("writing %s frame at %v: empty: %w", w.name, f.PTS, ErrBadFrame)
	}
	key := f.Keyframe || !w.video
	if f.PTS < 0 {
		return fmt.Errorf("writing %s frame: pts %v: %w", w.name, f.PTS, ErrBadTimestamp)
	}
	if w.started {
		if f.PTS < w.lastPTS {
			return fmt.Errorf("writing %s frame: pts %v before previous %v: %w",
				w.name, f.PTS, w.lastPTS, ErrBadTimestamp)
		}
		if gap := f.PTS - w.lastPTS; w.cfg.maxGap > 0 && gap > w.cfg.maxGap {
			return fmt.Errorf("writing %s frame: pts jumped by %v, more than %v: %w",
				w.name, gap, w.cfg.maxGap, media.ErrNewPart)
		}
	} else if !key {
		return fmt.Errorf("writing first %s frame: %w", w.name, ErrNotKeyframe)
	}

	block, width, height, err := w.codec.prepare(f.Data, key, !w.started)
	if err != nil {
		return fmt.Errorf("writing %s frame at %v: %w", w.name, f.PTS, err)
	}
	if len(block) > maxBlockPayload {
		return fmt.Errorf("writing %s frame at %v: %d bytes: %w", w.name, f.PTS, len(block), ErrBadFrame)
	}
	if width*height > w.width*w.height {
		w.width, w.height = width, height
	}
	if !w.started {
		if err := w.start(); err != nil {
			w.err = fmt.Errorf("writing %s file header: %w: %w", w.name, media.ErrWrite, err)
			return w.err
		}
		w.started = true
	}

	tc := int64(f.PTS / time.Millisecond)
	if w.needCluster(tc, key) {
		if err := w.mux.startCluster(tc); err != nil {
			w.err = fmt.Errorf("writing %s cluster: %w: %w", w.name, media.ErrWrite, err)
			return w.err
		}
	}
	if err := w.mux.writeSimpleBlock(trackNumber, tc, key, block); err != nil {
		w.err = fmt.Errorf("writing %s block: %w: %w", w.name, media.ErrWrite, err)
		return w.err
	}

	if w.frames > 0 {
		if d := f.PTS - w.lastPTS; d > 0 && d <= time.Second {
			w.interval = d
		}
	}
	w.lastPTS = f.PTS
	w.lastDur = f.Duration
	w.frames++
	return nil
}

// needCluster decides whether the block at tc (ms) starts a new cluster: before the int16
// block timecode would overflow, when the cluster reached its maximum duration, and on a key
// frame once it reached its minimum duration.
func (w *Writer) needCluster(tc int64, key bool) bool {
	m := w.mux
	if !m.inCluster {
		return true
	}
	rel := tc - m.clusterTC
	switch {
	case rel >= w.cfg.maxClusterDuration.Milliseconds():
		return true
	case key && rel >= w.cfg.clusterDuration.Milliseconds():
		return true
	}
	return false
}

// start writes the header from what the first frame taught the codec adapter.
func (w *Writer) start() error {
	hdr, err := marshalEBMLHeader(w.docType)
	if err != nil {
		return err
	}
	info, err := w.marshalInfo(0)
	if err != nil {
		return err
	}
	tracks, err := w.marshalTracks()
	if err != nil {
		return err
	}
	return w.mux.writeHeader(hdr, info, tracks)
}

func (w *Writer) marshalInfo(duration float64) ([]byte, error) {
	info := struct {
		Info infoElement `ebml:"Info"`
	}{infoElement{
		TimecodeScale: uint64(time.Millisecond),
		Title:         w.params.Title,
		MuxingApp:     w.cfg.muxingApp,
		WritingApp:    w.cfg.writingApp,
		DateUTC:       w.cfg.date,
		Duration:      duration,
	}}
	b, err := marshal(&info)
	if err != nil {
		return nil, fmt.Errorf("marshalling info: %w", err)
	}
	return b, nil
}

func (w *Writer) marshalTracks() ([]byte, error) {
	e := trackEntryElement{
		TrackNumber:  trackNumber,
		TrackUID:     w.trackUID,
		Name:         w.params.Title,
		CodecID:      w.codec.codecID(),
		CodecPrivate: w.codec.codecPrivate(),
	}
	if w.video {
		e.TrackType = 1
		e.Video = &videoElement{PixelWidth: uint64(w.width), PixelHeight: uint64(w.height)}
	} else {
		e.TrackType = 2
		channels := w.params.Channels
		if channels == 0 {
			channels = 2
		}
		e.Audio = &audioElement{SamplingFrequency: 48000, Channels: uint64(channels)}
	}
	var t tracksElement
	t.Tracks.TrackEntry = []trackEntryElement{e}
	b, err := marshal(&t)
	if err != nil {
		return nil, fmt.Errorf("marshalling tracks: %w", err)
	}
	return b, nil
}

// Flush pushes everything written so far to the file, and fsyncs it when the writer owns
// the file and WithSyncOnFlush is set (without it, asks the kernel to start writing the
// file to disk: media.StartWriteback). A crash after Flush keeps every block before it.
func (w *Writer) Flush() error {
	if w.closed {
		return media.ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	if !w.started {
		return nil
	}
	if err := w.mux.flush(); err != nil {
		w.err = fmt.Errorf("flushing %s file: %w: %w", w.name, media.ErrWrite, err)
		return w.err
	}
	if w.cfg.syncOnFlush && w.file != nil {
		if err := w.file.Sync(); err != nil {
			// After a failed fsync the kernel may have dropped the pages it could not
			// write: what the file holds is unknown.
			w.err = fmt.Errorf("syncing %s file: %w: %w", w.name, media.ErrWrite, err)
			return w.err
		}
	} else if w.file != nil {
		// The fsync at Close then finds little left to write (see StartWriteback).
		media.StartWriteback(w.file)
	}
	return nil
}

// Close finalises the file (Cues, Duration, SeekHead, sizes), syncs and closes it when the
// writer owns it. A writer closed before its first frame leaves an empty file. Close is
// idempotent; later calls return nil.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	var errs []error
	switch {
	case w.err != nil:
		errs = append(errs, w.err)
	case w.started:
		if err := w.finish(); err != nil {
			errs = append(errs, fmt.Errorf("finalising %s file: %w: %w", w.name, media.ErrWrite, err))
		}
	}
	if w.file != nil {
		if err := w.file.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("syncing %s file: %w", w.name, err))
		}
		if err := w.file.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing %s file: %w", w.name, err))
		}
	}
	return errors.Join(errs...)
}

func (w *Writer) finish() error {
	// The last frame lasts its own Duration, else the last frame interval, else (a single
	// frame) 1 ms: Matroska's Duration must be positive.
	end := w.lastPTS
	switch {
	case w.lastDur > 0:
		end = clampAdd(end, w.lastDur)
	case w.interval > 0:
		end = clampAdd(end, w.interval)
	default:
		end = clampAdd(end, time.Millisecond)
	}
	info, err := w.marshalInfo(durationMS(end))
	if err != nil {
		return err
	}
	tracks, err := w.marshalTracks()
	if err != nil {
		return err
	}
	return w.mux.finish(info, tracks)
}

// Size returns the width and height recorded for a video track: the largest (by area) seen
// in a key frame so far.
func (w *Writer) Size() (width, height int) { return w.width, w.height }

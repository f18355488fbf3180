package oggwriter

import (
	"errors"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
)

// Errors a caller branches on. WriteFrame wraps them with what it was doing; a frame that
// fails with one of them was dropped and the writer stays usable, so the caller can count
// it and carry on.
var (
	// ErrInvalidPacket means the frame is not a valid Opus packet (RFC 6716 §3.4: empty,
	// impossible frame lengths, more than 120 ms), or its Duration disagrees with its TOC.
	// It is the opus package's error.
	ErrInvalidPacket = opus.ErrInvalidPacket
	// ErrBackwards means the frame starts before the end of the previous frame (or before
	// the start of the file): a duplicate, an overlap or a timestamp that went back.
	ErrBackwards = errors.New("frame starts before the previous frame ends")
	// ErrGapTooLarge means the frame starts further after the previous frame than the
	// writer's maximum gap (WithMaxGap): most likely a broken clock, not a real pause.
	ErrGapTooLarge = errors.New("gap before frame too large")
	// ErrNotOpus is returned by Repair for a file that does not start with a complete
	// Ogg Opus identification header; the file is left as it is.
	ErrNotOpus = errors.New("not an ogg opus file")
	// ErrShortPage and ErrBadPage are ParsePage's verdicts: the bytes end before the page
	// does, so more bytes could complete it (a file still being written, a page torn by a
	// crash), or they do not start with a valid page and no number of bytes can make one.
	ErrShortPage = errors.New("ogg page cut short")
	ErrBadPage   = errors.New("not a valid ogg page")
)

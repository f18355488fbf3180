package mkvwriter

import "errors"

// Errors WriteFrame returns for frames it refuses; the frame is not written and the writer
// stays usable. Callers count them by kind. WriteFrame also returns media.ErrNewPart and
// media.ErrClosed (see media.Writer).
var (
	// ErrNotKeyframe: the first frame of a video file must be a key frame.
	ErrNotKeyframe = errors.New("first video frame is not a key frame")
	// ErrBadFrame: the frame is empty, or its bitstream headers do not parse (for key frames,
	// the size or parameter sets the writer needs).
	ErrBadFrame = errors.New("bad frame")
	// ErrBadTimestamp: the frame's PTS is negative or earlier than the previous frame's.
	ErrBadTimestamp = errors.New("bad frame timestamp")
)

// ErrUnsupportedCodec is returned by New and NewWith for codecs this writer cannot store.
var ErrUnsupportedCodec = errors.New("unsupported codec")

// ErrNotRecoverable is returned by Repair when a file holds no usable header (EBML header,
// Segment, Info and Tracks) and so no block can be saved.
var ErrNotRecoverable = errors.New("file not recoverable")

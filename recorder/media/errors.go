package media

import "errors"

// ErrNewPart is returned by WriteFrame when the frame cannot continue the current file
// (for example an H.264 stream whose SPS changed, which Matroska's CodecPrivate cannot
// follow). The caller closes the writer and starts the next part with this frame.
var ErrNewPart = errors.New("frame needs a new part")

// ErrClosed is returned when writing to a closed writer.
var ErrClosed = errors.New("writer closed")

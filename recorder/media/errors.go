package media

import "errors"

// ErrNewPart is returned by WriteFrame when the frame cannot continue the current file
// (for example an H.264 stream whose SPS changed, which Matroska's CodecPrivate cannot
// follow). The caller closes the writer and starts the next part with this frame.
var ErrNewPart = errors.New("frame needs a new part")

// ErrClosed is returned when writing to a closed writer.
var ErrClosed = errors.New("writer closed")

// ErrWrite is wrapped around an error of the file or stream underneath a writer (a full
// disk, an I/O error) by WriteFrame, Flush and Close. Such an error breaks the writer for
// good: where the stream ends on disk is unknown, so every later call returns it. What
// reached the file before can be saved with the container package's Repair; the caller
// goes on in a new file.
var ErrWrite = errors.New("writing the file failed")

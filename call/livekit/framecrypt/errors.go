package framecrypt

import (
	"errors"
	"fmt"
)

// Errors callers branch on.
var (
	// ErrServerInjected: the frame ends with the SFU's SIF trailer; it is not participant
	// media and is dropped.
	ErrServerInjected = errors.New("server injected frame")
	// ErrMissingKey: no key is known for the frame's key index (yet).
	ErrMissingKey = errors.New("no key for the frame's key index")
	// ErrAuthentication: no known key for the index opens the frame (wrong or replaced key,
	// or a damaged frame).
	ErrAuthentication = errors.New("frame does not decrypt with the known keys")
	// ErrMalformed: the frame is too short or its trailer is not what the SDK writes.
	ErrMalformed = errors.New("malformed encrypted frame")
	// ErrUnsupportedCodec: the codec has no defined encryption format (AV1).
	ErrUnsupportedCodec = errors.New("codec not supported by frame encryption")
)

// MissingKeyError says which key index was missing.
type MissingKeyError struct{ Index uint8 }

func (e *MissingKeyError) Error() string { return fmt.Sprintf("no key for key index %d", e.Index) }

// Unwrap makes errors.Is(err, ErrMissingKey) work.
func (e *MissingKeyError) Unwrap() error { return ErrMissingKey }

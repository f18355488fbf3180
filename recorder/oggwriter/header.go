package oggwriter

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
)

// appendOpusHead appends the identification header (RFC 7845 §5.1) for channel mapping
// family 0 (mono or stereo).
func appendOpusHead(dst []byte, channels uint8, preSkip uint16) []byte {
	dst = append(dst, "OpusHead"...)
	dst = append(dst, 1, channels)
	dst = binary.LittleEndian.AppendUint16(dst, preSkip)
	dst = binary.LittleEndian.AppendUint32(dst, opus.SampleRate) // input sample rate, informational
	dst = binary.LittleEndian.AppendUint16(dst, 0)               // output gain
	return append(dst, 0)                                        // channel mapping family 0
}

// appendOpusTags appends the comment header (RFC 7845 §5.2).
func appendOpusTags(dst []byte, vendor string, comments []string) []byte {
	dst = append(dst, "OpusTags"...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(vendor)))
	dst = append(dst, vendor...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(comments)))
	for _, c := range comments {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(c)))
		dst = append(dst, c...)
	}
	return dst
}

// checkComment checks a user comment "KEY=value": the key is printable ASCII without '='
// (RFC 7845 §5.2, after the Vorbis comment rules), the value anything.
func checkComment(c string) error {
	key, _, ok := strings.Cut(c, "=")
	if !ok || key == "" {
		return fmt.Errorf("comment %q is not KEY=value", c)
	}
	for i := range len(key) {
		if key[i] < 0x20 || key[i] > 0x7d {
			return fmt.Errorf("comment key %q has a character outside 0x20-0x7d", key)
		}
	}
	return nil
}

// ParseOpusHead returns the channel count and pre-skip of an identification header
// (the body of an Ogg Opus stream's first page).
func ParseOpusHead(b []byte) (channels uint8, preSkip uint16, ok bool) {
	if len(b) < 19 || string(b[:8]) != "OpusHead" || b[8]>>4 != 0 {
		return 0, 0, false
	}
	return b[9], binary.LittleEndian.Uint16(b[10:12]), true
}

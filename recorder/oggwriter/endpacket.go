package oggwriter

import "github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"

// appendEndPacket appends the silence packet that goes on a last page which would
// otherwise be empty (see Writer.addEndPacket). It is 2.5 ms long, or as long as it
// takes for the stream to hold at least preSkip samples after end samples of audio
// (up to 120 ms): players refuse a stream shorter than its pre-skip (opusfile).
func appendEndPacket(dst []byte, end int64, preSkip uint16) []byte {
	return opus.AppendSilence(dst, max(120, int64(preSkip)-end))
}

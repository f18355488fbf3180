package egress

import (
	"strings"

	"github.com/livekit/protocol/livekit"
	"maunium.net/go/mautrix/id"

	lk "github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// trackCodec is how a track egress writes a codec.
type trackCodec struct {
	mime      string
	clockRate uint32
	ext       string
}

// egressFiles is what Egress v1.8.6 writes a track of each codec into: it keeps the media
// as it came (no transcoding) in Ogg (Opus), WebM (VP8, VP9) or MP4 (H.264). It writes no
// track of other codecs (AV1, H.265).
var egressFiles = map[media.Codec]string{
	media.CodecOpus: ".ogg", media.CodecVP8: ".webm", media.CodecVP9: ".webm", media.CodecH264: ".mp4",
}

// codecOf maps a published track's MIME type to what its file will hold; ok is false for
// codecs Egress cannot write as a track.
func codecOf(mime string, kind livekit.TrackType) (trackCodec, bool) {
	m := strings.ToLower(mime)
	if m == "audio/red" || (m == "" && kind == livekit.TrackType_AUDIO) {
		// RED carries Opus; the server sends a subscriber that did not ask for RED (as
		// Egress's) the plain Opus stream.
		m = "audio/opus"
	}
	c, ok := codec.ByMimeType(m)
	if !ok {
		return trackCodec{}, false
	}
	ext, ok := egressFiles[c.ID]
	if !ok {
		return trackCodec{}, false
	}
	return trackCodec{mime: c.MimeType, clockRate: c.ClockRate, ext: ext}, true
}

// sourceWords names a source for people.
var sourceWords = map[string]string{
	recorder.SourceMicrophone:       "microphone",
	recorder.SourceCamera:           "camera",
	recorder.SourceScreenShare:      "screen share",
	recorder.SourceScreenShareAudio: "screen share audio",
}

// who maps a participant to the user and device its files are named after: an Element
// Call participant's Matrix user and device (from the call's memberships, or the
// "@user:server:DEVICE" identity), anyone else's LiveKit identity.
func who(p *livekit.ParticipantInfo, members map[string]matrixrtc.DeviceKey) matrixrtc.DeviceKey {
	if d, ok := members[p.Identity]; ok {
		return d
	}
	if k, ok := matrixrtc.DeviceOfIdentity(p.Identity); ok {
		return k
	}
	return matrixrtc.DeviceKey{User: id.UserID(p.Identity)}
}

// trackInfo describes a published track for the recorder.
func trackInfo(p *livekit.ParticipantInfo, t *livekit.TrackInfo, c trackCodec, members map[string]matrixrtc.DeviceKey) recorder.TrackInfo {
	d := who(p, members)
	return recorder.TrackInfo{
		UserID: string(d.User), DeviceID: string(d.Device), DisplayName: clean(p.Name),
		Source: lk.SourceName(t.Source, t.Type == livekit.TrackType_VIDEO), MimeType: c.mime, ClockRate: c.clockRate,
		Channels: map[bool]uint16{true: 2, false: 0}[t.Type == livekit.TrackType_AUDIO],
	}
}

// clean keeps a name from the network printable and bounded.
func clean(s string) string {
	return strings.TrimSpace(recorder.Printable(s, 128))
}

// isEgress tells the participants Egress itself adds to a room (they publish nothing).
func isEgress(p *livekit.ParticipantInfo) bool {
	return p.Kind == livekit.ParticipantInfo_EGRESS
}

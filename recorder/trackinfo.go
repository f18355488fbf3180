package recorder

import (
	"strings"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
)

// Sources of a track, named as LiveKit does.
const (
	SourceMicrophone       = "microphone"
	SourceCamera           = "camera"
	SourceScreenShare      = "screen_share"
	SourceScreenShareAudio = "screen_share_audio"
)

// Purposes (MSC3077).
const (
	PurposeUserMedia   = "m.usermedia"
	PurposeScreenshare = "m.screenshare"
)

// TrackInfo says whose a track is and what it carries.
type TrackInfo struct {
	UserID      string
	DeviceID    string
	DisplayName string
	// Purpose is m.usermedia or m.screenshare.
	Purpose string
	// Source is microphone, camera, screen_share or screen_share_audio; derived from
	// Purpose and the codec when empty.
	Source string

	// Codec as negotiated.
	MimeType    string
	ClockRate   uint32
	Channels    uint16
	Fmtp        string
	PayloadType uint8
	SSRC        uint32

	// ClockDomain groups tracks whose RTP clocks come from one sender (one peer
	// connection or one LiveKit participant), so that RTCP sender reports of one of them
	// place the others on the timeline too.
	ClockDomain string
}

// Codec returns the track's codec from the codec table; ok is false for a codec the recorder
// cannot write.
func (i TrackInfo) Codec() (c *codec.Spec, ok bool) { return codec.ByMimeType(i.MimeType) }

// Kind is "audio" or "video".
func (i TrackInfo) Kind() string {
	if c, ok := i.Codec(); ok {
		return c.Kind.String()
	}
	if strings.HasPrefix(strings.ToLower(i.MimeType), "video/") {
		return codec.Video.String()
	}
	return codec.Audio.String()
}

func (i TrackInfo) source() string {
	if i.Source != "" {
		return i.Source
	}
	screen := i.Purpose == PurposeScreenshare
	switch {
	case i.Kind() == "video" && screen:
		return SourceScreenShare
	case i.Kind() == "video":
		return SourceCamera
	case screen:
		return SourceScreenShareAudio
	default:
		return SourceMicrophone
	}
}

func (i TrackInfo) purpose() string {
	if i.Purpose != "" {
		return i.Purpose
	}
	if i.Source == SourceScreenShare || i.Source == SourceScreenShareAudio {
		return PurposeScreenshare
	}
	return PurposeUserMedia
}

// who names the track's owner in warnings: user id and device.
func (i TrackInfo) who() string {
	if i.DeviceID == "" {
		return i.UserID
	}
	return i.UserID + " (" + i.DeviceID + ")"
}

// logicalID names the logical track: owner, device, purpose and kind. Parts of the same
// logical track share it, so a track that comes back continues under the same name.
func (i TrackInfo) logicalID() string {
	dev := i.DeviceID
	if dev == "" {
		dev = "nodevice"
	}
	purpose := "usermedia"
	if i.purpose() == PurposeScreenshare {
		purpose = "screenshare"
	}
	return UserName(i.UserID) + "-" + Sanitize(dev) + "-" + purpose + "-" + i.Kind()
}

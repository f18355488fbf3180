package codec

import (
	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
	"github.com/matrix-recorder/matrix-recorder/recorder/depacketize"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter"
)

// table is every codec the recorder records, in the order the bot offers them. The payload
// types are the ones browsers use, so that answers keep the offerer's numbers.
var table = []*Spec{
	{
		ID: media.CodecOpus, MimeType: "audio/opus", Kind: Audio, ClockRate: opus.SampleRate, Channels: 2,
		RTP:       []RTPFormat{{111, "minptime=10;useinbandfec=1"}},
		Container: Ogg, Matroska: mkvwriter.Opus, Depacketizer: depacketize.NewOpus,
		Audio:      &AudioFrames{Duration: opus.Duration, Grid: opus.MinFrame, Silence: opus.Silence},
		Encryption: &FrameEncryption{ClearBytes: opusClearBytes},
	},
	{
		ID: media.CodecVP8, MimeType: "video/VP8", Kind: Video, ClockRate: 90000,
		RTP:       []RTPFormat{{96, ""}},
		Container: WebM, Matroska: mkvwriter.VP8, Depacketizer: depacketize.NewVP8,
		Encryption: &FrameEncryption{ClearBytes: vp8ClearBytes},
	},
	{
		ID: media.CodecVP9, MimeType: "video/VP9", Kind: Video, ClockRate: 90000,
		RTP:       []RTPFormat{{98, "profile-id=0"}, {100, "profile-id=2"}},
		Container: WebM, Matroska: mkvwriter.VP9, Depacketizer: depacketize.NewVP9,
		Encryption: &FrameEncryption{ClearBytes: vp9ClearBytes},
	},
	{
		ID: media.CodecH264, MimeType: "video/H264", Kind: Video, ClockRate: 90000,
		RTP: []RTPFormat{
			{102, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"},
			{104, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f"},
			{106, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
			{108, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"},
			{116, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f"},
			{112, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f"},
		},
		Container: Matroska, Matroska: mkvwriter.H264, Depacketizer: depacketize.NewH264,
		Encryption: &FrameEncryption{ClearBytes: h264ClearBytes, AddedPrefix: h264ParameterSets},
	},
	{
		// The LiveKit SDK defines no encryption format for AV1.
		ID: media.CodecAV1, MimeType: "video/AV1", Kind: Video, ClockRate: 90000,
		RTP:       []RTPFormat{{45, ""}},
		Container: WebM, Matroska: mkvwriter.AV1, Depacketizer: depacketize.NewAV1,
	},
}

package devtools

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// EgressPackages are the Debian packages LiveKit Egress needs to build (headers) and to
// record tracks (GStreamer elements for Opus, VP8/VP9 and H.264 in Ogg, WebM and MP4).
var EgressPackages = []string{
	"libgstreamer1.0-dev", "libgstreamer-plugins-base1.0-dev",
	"gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good", "gstreamer1.0-plugins-bad",
	"gstreamer1.0-plugins-ugly", "gstreamer1.0-libav", "redis-server",
}

// egressTool is LiveKit Egress v1.8.6, the newest release the module proxy serves here.
//
// Two changes are made to its source before the build:
//
//   - cmd/server/templates/index.html: the binary embeds the room composite web templates,
//     which its own release build makes with npm; the module zip does not have them. A
//     placeholder lets it build. Track egress never uses them; room composite needs Chrome
//     and the real templates anyway.
//
//   - pkg/pipeline/source/sdk/appwriter.go: livekit-server (v1.13.5 here) sends a subscriber
//     whose SDK is Go, as Egress's is, RTP padding on each new video subscription so that
//     pion fires OnTrack. Those packets carry the padding block twice (pion/rtp's newer
//     Header.PaddingSize plus a payload that is itself a padding block), so after the
//     padding is removed a 255-byte payload of zeros remains. Egress v1.8.6's jitter buffer
//     (server-sdk-go v2.2.1) treats only empty payloads as padding: it takes those packets
//     for media, and because they come before the first VP8 keyframe it never initialises,
//     no sample ever reaches GStreamer, and every video track egress ends "aborted: Stop
//     called before pipeline could start". Audio is not affected (the server sends silent
//     Opus frames there). The edit drops such packets before the jitter buffer.
func egressTool() Tool {
	return Tool{
		Name:      Egress,
		Version:   "v1.8.6",
		Packages:  []string{"github.com/livekit/egress/cmd/server"},
		Binaries:  []string{"server"},
		CGO:       true,
		NoSumDB:   []string{"github.com/livekit/egress"},
		BuildTime: 7 * time.Minute,
		Check:     checkGStreamerHeaders,
		Source: &SourceCopy{
			Module: "github.com/livekit/egress",
			Files: map[string]string{
				"cmd/server/templates/index.html": "<!doctype html><title>LiveKit Egress</title><p>Placeholder: the web templates are not built here.</p>\n",
			},
			Edits: []Edit{{
				File: "pkg/pipeline/source/sdk/appwriter.go",
				Why:  "drop the doubly padded packets livekit-server sends Go subscribers before video starts",
				Old: `	// initialize on first packet
	if w.lastRead.IsZero() {`,
				New: `	// livekit-server sends Go subscribers padding packets whose payload is itself a
	// padding block (zeros ending in its own length); they are not media.
	if n := len(pkt.Payload); pkt.Padding && n > 0 && int(pkt.Payload[n-1]) == n && onlyZeros(pkt.Payload[:n-1]) {
		return
	}

	// initialize on first packet
	if w.lastRead.IsZero() {`,
			}, {
				File: "pkg/pipeline/source/sdk/appwriter.go",
				Why:  "helper of the edit above",
				Old:  `func (w *AppWriter) pushSamples() error {`,
				New: `func onlyZeros(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (w *AppWriter) pushSamples() error {`,
			}},
		},
	}
}

// checkGStreamerHeaders reports the missing GStreamer development packages before a
// seven-minute build fails on them.
func checkGStreamerHeaders() error {
	if _, err := exec.LookPath("pkg-config"); err != nil {
		return errors.New("pkg-config is missing (Debian: apt-get install pkg-config " + strings.Join(EgressPackages, " ") + ")")
	}
	mods := []string{"gstreamer-1.0", "gstreamer-app-1.0", "gstreamer-base-1.0", "gstreamer-plugins-base-1.0", "gstreamer-video-1.0", "gstreamer-audio-1.0", "gstreamer-pbutils-1.0"}
	if out, err := exec.Command("pkg-config", append([]string{"--exists", "--print-errors"}, mods...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("GStreamer headers are missing (Debian: apt-get install %s): %s", strings.Join(EgressPackages, " "), strings.TrimSpace(string(out)))
	}
	return nil
}

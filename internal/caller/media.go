package caller

import (
	"context"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// Media is what a track sends: its codec and its frames, sent in real time and looped.
type Media struct {
	Capability webrtc.RTPCodecCapability
	Video      bool
	Frames     []testmedia.Frame
}

// AssetMedia returns the media of a testmedia asset.
func AssetMedia(name string) (*Media, error) {
	a, err := testmedia.Lookup(name)
	if err != nil {
		return nil, err
	}
	frames, err := testmedia.Frames(name)
	if err != nil {
		return nil, err
	}
	return &Media{Capability: a.Capability(), Video: a.Video, Frames: frames}, nil
}

// SetFrames switches a track ("usermedia-audio", "usermedia-video", ...) to other frames
// of the same codec on the same RTP stream (same SSRC, continuing sequence numbers and
// timestamps): what a browser sends when the user switches microphone or camera
// (RTCRtpSender.replaceTrack) or its encoder changes resolution. Video frames should
// start with a keyframe.
func (call *Call) SetFrames(name string, frames []testmedia.Frame) error {
	call.mu.Lock()
	local := call.locals[name]
	call.mu.Unlock()
	if local == nil {
		return fmt.Errorf("no track %q", name)
	}
	call.stopSender(name)
	call.mu.Lock()
	call.senders[name] = testmedia.NewSender(local, frames)
	call.mu.Unlock()
	call.runSender(name)
	return nil
}

// ReplaceTrack removes a track and adds a new one in its place (same stream, so the same
// purpose), then renegotiates: the new track has a new SSRC, as when a client swaps its
// microphone or camera by renegotiating.
func (call *Call) ReplaceTrack(ctx context.Context, name string, m *Media) error {
	call.mu.Lock()
	old := call.rtpSenders[name]
	stream := call.streams[name]
	call.mu.Unlock()
	if old == nil {
		return fmt.Errorf("no track %q", name)
	}
	call.stopSender(name)
	if err := call.pc.RemoveTrack(old); err != nil {
		return fmt.Errorf("remove track: %w", err)
	}
	label := stream // "usermedia-<random>" -> "usermedia"
	if i := strings.LastIndexByte(stream, '-'); i > 0 {
		label = stream[:i]
	}
	if err := call.addTrack(m, stream, label); err != nil {
		return err
	}
	if err := call.renegotiate(ctx, nil); err != nil {
		return err
	}
	call.runSender(name)
	return nil
}

// Network returns what the impairment (CallOptions.Network) did so far.
func (call *Call) Network() NetworkStats {
	if call.network == nil {
		return NetworkStats{}
	}
	return call.network.Stats()
}

// Package testmedia holds small committed media files (Opus tones, VP8, VP9,
// H.264 and AV1 test patterns) and turns them into frames that tests and the
// demo send into calls in real time.
package testmedia

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
)

//go:embed assets/*.ogg assets/*.ivf assets/*.h264
var assets embed.FS

// Names of the assets.
const (
	Tone440 = "tone440.ogg" // Opus 48 kHz stereo, 5 s of 440 Hz
	Tone660 = "tone660.ogg" // Opus 48 kHz stereo, 5 s of 660 Hz
	VP8     = "vp8.ivf"     // 320x240 15 fps, 3 s, keyframe every 15 frames
	VP9     = "vp9.ivf"     // as VP8
	H264    = "h264.h264"   // as VP8, constrained baseline Annex B
	AV1     = "av1.ivf"     // as VP8
)

// Frame is one encoded frame: an Opus packet, or one video picture (for H.264
// a whole access unit in Annex B form, parameter sets included).
type Frame struct {
	Data     []byte
	Duration time.Duration
	// Keyframe is true for video frames that start a decodable sequence,
	// and for every Opus packet.
	Keyframe bool
}

// Asset describes one file.
type Asset struct {
	Name      string
	Video     bool
	MimeType  string
	ClockRate uint32
	Channels  uint16
	Width     int
	Height    int
	// Hz is the tone's frequency (audio only).
	Hz float64
	// SDPFmtpLine is the fmtp the track should declare (H.264).
	SDPFmtpLine string
}

// Assets lists every asset.
func Assets() []Asset {
	return []Asset{
		{Name: Tone440, MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, Hz: 440},
		{Name: Tone660, MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, Hz: 660},
		{Name: VP8, Video: true, MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, Width: 320, Height: 240},
		{Name: VP9, Video: true, MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, Width: 320, Height: 240,
			SDPFmtpLine: "profile-id=0"},
		{Name: H264, Video: true, MimeType: webrtc.MimeTypeH264, ClockRate: 90000, Width: 320, Height: 240,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
		{Name: AV1, Video: true, MimeType: webrtc.MimeTypeAV1, ClockRate: 90000, Width: 320, Height: 240},
	}
}

// Lookup returns the asset with the given name.
func Lookup(name string) (Asset, error) {
	for _, a := range Assets() {
		if a.Name == name {
			return a, nil
		}
	}
	return Asset{}, fmt.Errorf("no test media named %q", name)
}

// Capability returns the codec capability for a local track sending the asset.
func (a Asset) Capability() webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{
		MimeType:    a.MimeType,
		ClockRate:   a.ClockRate,
		Channels:    a.Channels,
		SDPFmtpLine: a.SDPFmtpLine,
	}
}

// Bytes returns the raw file.
func Bytes(name string) ([]byte, error) {
	data, err := assets.ReadFile("assets/" + name)
	if err != nil {
		return nil, fmt.Errorf("reading test media %s: %w", name, err)
	}
	return data, nil
}

// WriteFile copies the raw file into dir and returns its path, for tools
// that want a file (ffprobe, ffmpeg).
func WriteFile(dir, name string) (string, error) {
	data, err := Bytes(name)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("writing test media %s: %w", name, err)
	}
	return path, nil
}

// Frames returns the frames of any asset.
func Frames(name string) ([]Frame, error) {
	a, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if a.Video {
		return VideoFrames(name)
	}
	return OpusFrames(name)
}

// OpusFrames returns the Opus packets of an Ogg asset. The assets hold one
// packet per page, which this checks from the granule positions: pion's
// oggreader returns a page's packets joined together.
func OpusFrames(name string) ([]Frame, error) {
	data, err := Bytes(name)
	if err != nil {
		return nil, err
	}
	return ParseOgg(name, data)
}

// ParseOgg returns the Opus packets of an Ogg Opus file (name is for
// errors) that holds one packet per page, as OpusFrames does for an asset.
// Tests use it for media they make themselves (ffmpeg with
// -page_duration 20000, see assets/generate.sh).
func ParseOgg(name string, data []byte) ([]Frame, error) {
	r, head, err := oggreader.NewWith(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("reading Ogg header of %s: %w", name, err)
	}
	if head.SampleRate == 0 {
		return nil, fmt.Errorf("%s: no sample rate in OpusHead", name)
	}
	var frames []Frame
	var granule uint64
	for {
		payload, page, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading Ogg page of %s: %w", name, err)
		}
		if _, ok := page.HeaderType(payload); ok || len(payload) == 0 {
			continue // OpusTags, or an empty page
		}
		d, err := opus.Duration(payload)
		if err != nil {
			return nil, fmt.Errorf("%s, packet %d: %w", name, len(frames), err)
		}
		// Granule positions count 48 kHz samples; the last page may end
		// early (end trimming), every other must hold exactly this packet.
		step := page.GranulePosition - granule
		granule = page.GranulePosition
		if len(frames) > 0 && step > uint64(d.Seconds()*48000) {
			return nil, fmt.Errorf("%s: page %d holds more than one packet (%d samples for a %s packet)",
				name, len(frames), step, d)
		}
		frames = append(frames, Frame{Data: payload, Duration: d, Keyframe: true})
	}
	if len(frames) == 0 {
		return nil, fmt.Errorf("%s: no Opus packets", name)
	}
	return frames, nil
}

// VideoFrames returns the pictures of a video asset with their durations
// and keyframe flags.
func VideoFrames(name string) ([]Frame, error) {
	a, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	data, err := Bytes(name)
	if err != nil {
		return nil, err
	}
	var frames []Frame
	switch a.MimeType {
	case webrtc.MimeTypeH264:
		frames, err = h264Frames(data, 15)
	default:
		frames, err = ivfFrames(data, a.MimeType)
	}
	if err != nil {
		return nil, fmt.Errorf("reading frames of %s: %w", name, err)
	}
	if len(frames) == 0 || !frames[0].Keyframe {
		return nil, fmt.Errorf("%s: does not start with a keyframe", name)
	}
	return frames, nil
}

func ivfFrames(data []byte, mime string) ([]Frame, error) {
	r, head, err := ivfreader.NewWith(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if head.TimebaseDenominator == 0 || head.TimebaseNumerator == 0 {
		return nil, errors.New("IVF header without a time base")
	}
	// pion names the header's rate "TimebaseDenominator" and its scale
	// "TimebaseNumerator", and reports frame times as pts*rate/scale; undo
	// that to get the pts, in units of scale/rate seconds.
	rate, scale := uint64(head.TimebaseDenominator), uint64(head.TimebaseNumerator)
	ptsDuration := func(ts0, ts1 uint64) time.Duration {
		pts0, pts1 := ts0*scale/rate, ts1*scale/rate
		return time.Duration(pts1-pts0) * time.Second * time.Duration(scale) / time.Duration(rate)
	}
	var frames []Frame
	var pts []uint64
	for {
		payload, fh, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		frames = append(frames, Frame{Data: payload, Keyframe: isKeyframe(mime, payload)})
		pts = append(pts, fh.Timestamp)
	}
	for i := range frames {
		if i+1 < len(frames) {
			frames[i].Duration = ptsDuration(pts[i], pts[i+1])
		} else if i > 0 {
			frames[i].Duration = frames[i-1].Duration
		}
		if frames[i].Duration <= 0 {
			return nil, fmt.Errorf("frame %d has no duration", i)
		}
	}
	return frames, nil
}

func isKeyframe(mime string, p []byte) bool {
	if len(p) == 0 {
		return false
	}
	switch mime {
	case webrtc.MimeTypeVP8:
		// Frame tag: bit 0 is 0 for a key frame.
		return p[0]&1 == 0
	case webrtc.MimeTypeVP9:
		// Uncompressed header, profile 0/1/2: frame_marker(2)
		// profile(2) show_existing_frame(1) frame_type(1, 0 = key).
		return p[0]>>6 == 2 && p[0]&0x08 == 0 && p[0]&0x04 == 0
	case webrtc.MimeTypeAV1:
		// libaom repeats the sequence header before each key frame.
		return av1HasSequenceHeader(p)
	}
	return false
}

// av1HasSequenceHeader walks the OBUs of a temporal unit (low overhead
// format, every OBU with a size field as in IVF).
func av1HasSequenceHeader(p []byte) bool {
	for len(p) > 0 {
		h := p[0]
		typ := (h >> 3) & 0x0f
		hasExt := h&0x04 != 0
		hasSize := h&0x02 != 0
		n := 1
		if hasExt {
			n++
		}
		if !hasSize || len(p) < n {
			return typ == 1
		}
		size, l := leb128(p[n:])
		if l == 0 {
			return false
		}
		if typ == 1 {
			return true
		}
		next := n + l + int(size)
		if next > len(p) || next <= 0 {
			return false
		}
		p = p[next:]
	}
	return false
}

func leb128(p []byte) (uint64, int) {
	var v uint64
	for i := 0; i < 8 && i < len(p); i++ {
		v |= uint64(p[i]&0x7f) << (7 * i)
		if p[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

// h264Frames groups NAL units into access units: parameter sets and SEI
// collect until the next slice, and each slice ends a picture (the asset has
// one slice per picture).
func h264Frames(data []byte, fps int) ([]Frame, error) {
	r, err := h264reader.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var frames []Frame
	var au []byte
	key := false
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		au = append(au, 0, 0, 0, 1)
		au = append(au, nal.Data...)
		switch nal.UnitType {
		case h264reader.NalUnitTypeCodedSliceIdr:
			key = true
			fallthrough
		case h264reader.NalUnitTypeCodedSliceNonIdr:
			frames = append(frames, Frame{Data: au, Duration: time.Second / time.Duration(fps), Keyframe: key})
			au, key = nil, false
		}
	}
	return frames, nil
}

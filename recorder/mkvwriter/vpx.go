package mkvwriter

import (
	"encoding/binary"
	"fmt"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// parseVP8Keyframe reads the frame size from a VP8 key frame header (RFC 6386 §9.1): a
// 3-byte frame tag, the start code 9d 01 2a, then 14-bit width and height with 2-bit scales.
func parseVP8Keyframe(b []byte) (width, height int, err error) {
	if len(b) < 10 {
		return 0, 0, fmt.Errorf("parsing vp8 key frame of %d bytes: %w", len(b), ErrBadFrame)
	}
	if b[0]&1 != 0 {
		return 0, 0, fmt.Errorf("parsing vp8 key frame: frame tag says inter frame: %w", ErrBadFrame)
	}
	if v := (b[0] >> 1) & 7; v > 3 {
		return 0, 0, fmt.Errorf("parsing vp8 key frame: version %d: %w", v, ErrBadFrame)
	}
	if b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a {
		return 0, 0, fmt.Errorf("parsing vp8 key frame: no start code: %w", ErrBadFrame)
	}
	width = int(binary.LittleEndian.Uint16(b[6:]) & 0x3fff)
	height = int(binary.LittleEndian.Uint16(b[8:]) & 0x3fff)
	if width == 0 || height == 0 {
		return 0, 0, fmt.Errorf("parsing vp8 key frame: size %dx%d: %w", width, height, ErrBadFrame)
	}
	return width, height, nil
}

// vp9Frames splits a VP9 superframe into its frames by the index at its end (VP9 bitstream
// spec Annex B). A buffer without an index is one frame. It returns the frame count and
// fills sizes (at most 8 frames).
func vp9Frames(b []byte, sizes *[8]int) int {
	if len(b) == 0 {
		return 0
	}
	marker := b[len(b)-1]
	if marker&0xe0 == 0xc0 {
		frames := int(marker&7) + 1
		mag := int((marker>>3)&3) + 1
		indexLen := 2 + mag*frames
		if len(b) >= indexLen && b[len(b)-indexLen] == marker {
			idx := b[len(b)-indexLen+1:]
			total := 0
			for i := 0; i < frames; i++ {
				size := 0
				for j := 0; j < mag; j++ {
					size |= int(idx[i*mag+j]) << (8 * j)
				}
				sizes[i] = size
				total += size
			}
			if total <= len(b)-indexLen {
				return frames
			}
		}
	}
	sizes[0] = len(b)
	return 1
}

// parseVP9Keyframe checks that a VP9 frame (or superframe) starts with a key frame and
// returns the largest frame size coded in it. In a superframe of spatial layers, upper layers
// of a key picture are inter frames that code their size explicitly; sizes taken from a
// reference frame are not known here and are skipped.
func parseVP9Keyframe(b []byte) (width, height int, err error) {
	var sizes [8]int
	n := vp9Frames(b, &sizes)
	off := 0
	for i := 0; i < n; i++ {
		frame := b[off : off+sizes[i]]
		off += sizes[i]
		w, h, key, err := parseVP9Header(frame)
		if i == 0 {
			if err != nil {
				return 0, 0, err
			}
			if !key {
				return 0, 0, fmt.Errorf("parsing vp9 key frame: frame header says inter frame: %w", ErrBadFrame)
			}
		}
		if err == nil && w*h > width*height {
			width, height = w, h
		}
	}
	if width == 0 {
		return 0, 0, fmt.Errorf("parsing vp9 key frame: no frame size: %w", ErrBadFrame)
	}
	return width, height, nil
}

// parseVP9Header reads a VP9 uncompressed header (VP9 bitstream spec §6.2) as far as the
// frame size. It returns w, h = 0 when the frame takes its size from a reference.
func parseVP9Header(b []byte) (width, height int, key bool, err error) {
	r := bitReader{data: b}
	if r.bits(2) != 2 {
		return 0, 0, false, fmt.Errorf("parsing vp9 frame header: bad frame marker: %w", ErrBadFrame)
	}
	profile := int(r.bit()) | int(r.bit())<<1
	if profile == 3 && r.bit() != 0 {
		return 0, 0, false, fmt.Errorf("parsing vp9 frame header: reserved bit set: %w", ErrBadFrame)
	}
	if r.flag() { // show_existing_frame
		return 0, 0, false, nil
	}
	key = r.bit() == 0 // frame_type
	showFrame := r.flag()
	errorResilient := r.flag()
	intraOnly := false
	if !key {
		if !showFrame {
			intraOnly = r.flag()
		}
		if !errorResilient {
			r.bits(2) // reset_frame_context
		}
	}
	if key || intraOnly {
		if r.bits(24) != 0x498342 {
			if r.err != nil {
				return 0, 0, key, fmt.Errorf("parsing vp9 frame header: %w", ErrBadFrame)
			}
			return 0, 0, key, fmt.Errorf("parsing vp9 frame header: bad sync code: %w", ErrBadFrame)
		}
		if key || profile > 0 {
			vp9ColorConfig(&r, profile)
		}
		if intraOnly {
			r.bits(8) // refresh_frame_flags
		}
	} else {
		r.bits(8) // refresh_frame_flags
		for i := 0; i < 3; i++ {
			r.bits(4) // ref_frame_idx, ref_frame_sign_bias
		}
		for i := 0; i < 3; i++ {
			if r.flag() { // found_ref: the size is that of a reference frame
				return 0, 0, false, nil
			}
		}
	}
	width = int(r.bits(16)) + 1
	height = int(r.bits(16)) + 1
	if r.err != nil {
		return 0, 0, key, fmt.Errorf("parsing vp9 frame header: %w", ErrBadFrame)
	}
	return width, height, key, nil
}

// vp9ColorConfig reads past color_config() (VP9 bitstream spec §6.2.2).
func vp9ColorConfig(r *bitReader, profile int) {
	if profile >= 2 {
		r.bit() // ten_or_twelve_bit
	}
	const csRGB = 7
	if r.bits(3) != csRGB {
		r.bit() // color_range
		if profile == 1 || profile == 3 {
			r.bits(3) // subsampling_x, subsampling_y, reserved_zero
		}
	} else if profile == 1 || profile == 3 {
		r.bit() // reserved_zero
	}
}

// VP8 is VP8 in WebM (V_VP8).
var VP8 = Codec{name: "vp8", docType: "webm", video: true, adapter: func(media.TrackParams) (codecAdapter, error) { return &vp8Adapter{}, nil }}

// VP9 is VP9 in WebM (V_VP9).
var VP9 = Codec{name: "vp9", docType: "webm", video: true, adapter: func(media.TrackParams) (codecAdapter, error) { return &vp9Adapter{}, nil }}

type vp8Adapter struct{}

func (*vp8Adapter) codecID() string      { return "V_VP8" }
func (*vp8Adapter) codecPrivate() []byte { return nil }
func (*vp8Adapter) prepare(data []byte, key, _ bool) ([]byte, int, int, error) {
	if !key {
		return data, 0, 0, nil
	}
	w, h, err := parseVP8Keyframe(data)
	return data, w, h, err
}

type vp9Adapter struct{}

func (*vp9Adapter) codecID() string      { return "V_VP9" }
func (*vp9Adapter) codecPrivate() []byte { return nil }
func (*vp9Adapter) prepare(data []byte, key, _ bool) ([]byte, int, int, error) {
	if !key {
		return data, 0, 0, nil
	}
	w, h, err := parseVP9Keyframe(data)
	return data, w, h, err
}

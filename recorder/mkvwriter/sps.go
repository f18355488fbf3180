package mkvwriter

import (
	"errors"
	"fmt"
)

// errBadSPS means that an H.264 sequence parameter set could not be parsed.
var errBadSPS = fmt.Errorf("bad h264 sps: %w", ErrBadFrame)

// spsInfo is what the writer needs from an H.264 sequence parameter set.
type spsInfo struct {
	profileIDC, constraints, levelIDC uint8
	chromaFormatIDC                   uint32
	bitDepthLumaMinus8                uint32
	bitDepthChromaMinus8              uint32
	width, height                     int
}

// Limits that keep hostile SPS values from turning into absurd sizes (H.264 level 6.2 tops
// out at 139264 macroblocks per frame, about 8192x4320).
const (
	maxMBs       = 1024 // per dimension: 16384 pixels
	maxRefFrames = 255
)

// parseSPS parses an SPS NAL unit (starting with its one-byte NAL header, emulation
// prevention bytes still in place) up to the frame cropping fields (ITU-T H.264 §7.3.2.1.1).
func parseSPS(nal []byte) (spsInfo, error) {
	var s spsInfo
	if len(nal) < 4 {
		return s, fmt.Errorf("parsing sps of %d bytes: %w", len(nal), errBadSPS)
	}
	if nal[0]&0x1F != 7 || nal[0]&0x80 != 0 {
		return s, fmt.Errorf("parsing sps: nal header %#x: %w", nal[0], errBadSPS)
	}
	r := bitReader{data: nal[1:], epb: true}
	s.profileIDC = uint8(r.bits(8))
	s.constraints = uint8(r.bits(8))
	s.levelIDC = uint8(r.bits(8))
	if id := r.ue(); id > 31 {
		return s, fmt.Errorf("parsing sps: seq_parameter_set_id %d: %w", id, errBadSPS)
	}
	s.chromaFormatIDC = 1
	separateColourPlane := false
	switch s.profileIDC {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		s.chromaFormatIDC = r.ue()
		if s.chromaFormatIDC > 3 {
			return s, fmt.Errorf("parsing sps: chroma_format_idc %d: %w", s.chromaFormatIDC, errBadSPS)
		}
		if s.chromaFormatIDC == 3 {
			separateColourPlane = r.flag()
		}
		s.bitDepthLumaMinus8 = r.ue()
		s.bitDepthChromaMinus8 = r.ue()
		if s.bitDepthLumaMinus8 > 6 || s.bitDepthChromaMinus8 > 6 {
			return s, fmt.Errorf("parsing sps: bit depth: %w", errBadSPS)
		}
		r.bit()       // qpprime_y_zero_transform_bypass_flag
		if r.flag() { // seq_scaling_matrix_present_flag
			lists := 8
			if s.chromaFormatIDC == 3 {
				lists = 12
			}
			for i := 0; i < lists && r.err == nil; i++ {
				if !r.flag() {
					continue
				}
				size := 16
				if i >= 6 {
					size = 64
				}
				skipScalingList(&r, size)
			}
		}
	}
	if r.ue() > 12 { // log2_max_frame_num_minus4
		return s, fmt.Errorf("parsing sps: log2_max_frame_num: %w", errBadSPS)
	}
	switch pocType := r.ue(); pocType {
	case 0:
		if r.ue() > 12 { // log2_max_pic_order_cnt_lsb_minus4
			return s, fmt.Errorf("parsing sps: log2_max_pic_order_cnt_lsb: %w", errBadSPS)
		}
	case 1:
		r.bit() // delta_pic_order_always_zero_flag
		r.se()  // offset_for_non_ref_pic
		r.se()  // offset_for_top_to_bottom_field
		n := r.ue()
		if n > maxRefFrames {
			return s, fmt.Errorf("parsing sps: %d ref frames in poc cycle: %w", n, errBadSPS)
		}
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.se()
		}
	case 2:
	default:
		return s, fmt.Errorf("parsing sps: pic_order_cnt_type %d: %w", pocType, errBadSPS)
	}
	r.ue()  // max_num_ref_frames
	r.bit() // gaps_in_frame_num_value_allowed_flag
	widthMBs := r.ue() + 1
	heightMapUnits := r.ue() + 1
	frameMBsOnly := r.flag()
	if !frameMBsOnly {
		r.bit() // mb_adaptive_frame_field_flag
	}
	r.bit() // direct_8x8_inference_flag
	var cropLeft, cropRight, cropTop, cropBottom uint32
	if r.flag() {
		cropLeft, cropRight, cropTop, cropBottom = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err != nil {
		return s, fmt.Errorf("parsing sps: %w", errors.Join(errBadSPS, r.err))
	}
	if widthMBs > maxMBs || heightMapUnits > maxMBs {
		return s, fmt.Errorf("parsing sps: %dx%d macroblocks: %w", widthMBs, heightMapUnits, errBadSPS)
	}
	fieldFactor := uint32(1)
	if !frameMBsOnly {
		fieldFactor = 2
	}
	width := widthMBs * 16
	height := fieldFactor * heightMapUnits * 16

	// Crop units (§7.4.2.1.1): in chroma samples, and in field pairs for interlaced coding.
	chromaArrayType := s.chromaFormatIDC
	if separateColourPlane {
		chromaArrayType = 0
	}
	cropUnitX, cropUnitY := uint32(1), fieldFactor
	switch chromaArrayType {
	case 1:
		cropUnitX, cropUnitY = 2, 2*fieldFactor
	case 2:
		cropUnitX, cropUnitY = 2, fieldFactor
	}
	cropX := uint64(cropLeft) + uint64(cropRight)
	cropY := uint64(cropTop) + uint64(cropBottom)
	if cropX*uint64(cropUnitX) >= uint64(width) || cropY*uint64(cropUnitY) >= uint64(height) {
		return s, fmt.Errorf("parsing sps: cropping %d,%d of %dx%d: %w", cropX, cropY, width, height, errBadSPS)
	}
	s.width = int(uint64(width) - cropX*uint64(cropUnitX))
	s.height = int(uint64(height) - cropY*uint64(cropUnitY))
	return s, nil
}

// skipScalingList reads past a scaling_list() of the given size (§7.3.2.1.1.1).
func skipScalingList(r *bitReader, size int) {
	last, next := int32(8), int32(8)
	for j := 0; j < size && r.err == nil; j++ {
		if next != 0 {
			delta := r.se()
			next = (last + delta + 256) % 256
		}
		if next != 0 {
			last = next
		}
	}
}

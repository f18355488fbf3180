package codec

import (
	"slices"
	"testing"
)

func TestNALUStarts(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want []int
		ok   bool
	}{
		{[]byte{0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2}, []int{4, 9}, true},
		{[]byte{0, 0, 1, 0x65, 0, 0, 0, 0, 1, 0x41}, []int{3, 9}, true},
		{[]byte{0, 0, 0, 0, 0, 1, 0x65}, []int{6}, true},
		{[]byte{0x10, 0, 0, 1, 0x65}, nil, false},
		{[]byte{0x9d, 0x01, 0x2a}, nil, false},
		{nil, nil, true},
	} {
		got, ok := naluStarts(tc.in)
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("naluStarts(%x) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	// No slice: the VP8 rule applies, with the frame type.
	if n, rbsp := h264ClearBytes([]byte{0, 0, 0, 1, 0x67, 1, 2, 3}, true); n != 10 || rbsp {
		t.Errorf("H.264 without a slice: header %d rbsp %v, want 10 false", n, rbsp)
	}
	if n, _ := h264ClearBytes([]byte{0, 0, 0, 1, 0x41, 0x9a, 2, 3}, false); n != 6 {
		t.Errorf("H.264 P slice: header %d, want 6", n)
	}
}

func TestH264ParameterSets(t *testing.T) {
	sps := []byte{0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f}
	pps := []byte{0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80}
	idr := []byte{0, 0, 0, 1, 0x65, 0x88}
	header := slices.Concat(sps, pps, idr)
	if n := h264ParameterSets(header); n != len(sps)+len(pps) {
		t.Errorf("SPS, PPS, IDR: %d bytes of parameter sets, want %d", n, len(sps)+len(pps))
	}
	if n := h264ParameterSets(idr); n != 0 {
		t.Errorf("IDR alone: %d bytes of parameter sets, want 0", n)
	}
}

package mkvwriter

import "errors"

// errShortHeader means that a codec header ended before all of its fields were read.
var errShortHeader = errors.New("header ends early")

// bitReader reads most-significant-bit-first fields. With epb set it drops the H.264
// emulation prevention bytes (the 0x03 in 00 00 03) as it goes, so an SPS can be parsed
// in place without an unescaped copy. Reading past the end sets err and returns zeros, so
// parsers check err once after a group of fields.
type bitReader struct {
	data  []byte
	pos   int  // next byte of data to load
	cur   byte // bits not yet read, left-aligned
	left  uint // number of valid bits in cur
	zeros int  // zero bytes seen in a row (for epb)
	epb   bool
	err   error
}

func (r *bitReader) loadByte() bool {
	for r.pos < len(r.data) {
		c := r.data[r.pos]
		r.pos++
		if r.epb && r.zeros >= 2 && c == 0x03 {
			r.zeros = 0
			continue
		}
		if c == 0 {
			r.zeros++
		} else {
			r.zeros = 0
		}
		r.cur, r.left = c, 8
		return true
	}
	r.err = errShortHeader
	return false
}

// bit reads one bit.
func (r *bitReader) bit() uint32 {
	if r.left == 0 && !r.loadByte() {
		return 0
	}
	r.left--
	v := r.cur >> 7
	r.cur <<= 1
	return uint32(v)
}

// flag reads one bit as a bool.
func (r *bitReader) flag() bool { return r.bit() == 1 }

// bits reads n <= 64 bits.
func (r *bitReader) bits(n int) uint64 {
	var v uint64
	for i := 0; i < n; i++ {
		v = v<<1 | uint64(r.bit())
		if r.err != nil {
			return 0
		}
	}
	return v
}

// ue reads an unsigned exp-Golomb code (H.264 ue(v)); values above 2^32-2 are an error.
func (r *bitReader) ue() uint32 {
	zeros := 0
	for r.bit() == 0 {
		if r.err != nil {
			return 0
		}
		zeros++
		if zeros > 31 {
			r.err = errBadExpGolomb
			return 0
		}
	}
	if zeros == 0 {
		return 0
	}
	return uint32((uint64(1)<<zeros - 1) + r.bits(zeros))
}

// se reads a signed exp-Golomb code (H.264 se(v)).
func (r *bitReader) se() int32 {
	k := r.ue()
	if k&1 == 1 {
		return int32((int64(k) + 1) / 2)
	}
	return int32(-(int64(k) / 2))
}

// uvlc reads an AV1 uvlc() value.
func (r *bitReader) uvlc() uint32 {
	zeros := 0
	for r.bit() == 0 {
		if r.err != nil {
			return 0
		}
		zeros++
		if zeros >= 32 {
			r.err = errBadExpGolomb
			return 0
		}
	}
	return uint32((uint64(1)<<zeros - 1) + r.bits(zeros))
}

var errBadExpGolomb = errors.New("exp-golomb code too long")

package oggwriter

// crcTable is the lookup table of the Ogg page checksum: CRC-32 with polynomial 0x04c11db7,
// initial value 0, no reflection, no final xor (RFC 3533 §6). Computed once, only read.
var crcTable = makeCRCTable()

func makeCRCTable() [256]uint32 {
	var t [256]uint32
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return t
}

// crcUpdate continues the checksum c over b.
func crcUpdate(c uint32, b []byte) uint32 {
	for _, x := range b {
		c = c<<8 ^ crcTable[byte(c>>24)^x]
	}
	return c
}

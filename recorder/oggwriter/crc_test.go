package oggwriter

import (
	"hash/crc32"
	"math/bits"
	"testing"
)

func TestCRC(t *testing.T) {
	// CRC-32/CKSUM (POSIX cksum) uses the same polynomial, initial value and bit order
	// and xors the result with 0xffffffff; its check value for "123456789" is 0x765e7680.
	if got := crcUpdate(0, []byte("123456789")) ^ 0xffffffff; got != 0x765e7680 {
		t.Fatalf("crc of 123456789 = %#x", got)
	}
	// Cross-check against the standard library's reflected CRC-32 with the same
	// polynomial: reflect input bytes and output, and undo its initial and final xor.
	data := []byte("OggS page checksum cross-check, with every byte value: \x00\x01\x7f\x80\xfe\xff")
	rev := make([]byte, len(data))
	for i, b := range data {
		rev[i] = bits.Reverse8(b)
	}
	table := crc32.MakeTable(bits.Reverse32(0x04c11db7))
	// Initial value 0 for ours means crc32's internal register starts at 0, which
	// crc32.Update reaches with an initial argument of 0xffffffff.
	std := crc32.Update(0xffffffff, table, rev) ^ 0xffffffff
	if got, want := crcUpdate(0, data), bits.Reverse32(std); got != want {
		t.Fatalf("crc = %#x, reflected standard crc = %#x", got, want)
	}
}

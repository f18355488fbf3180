package mkvscan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestParseHeader(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		id      uint32
		size    int64
		n       int
		wantErr error
	}{
		{"one-byte id and size", []byte{0xA3, 0x85}, 0xA3, 5, 2, nil},
		{"four-byte id, unknown 8-byte size", []byte{0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
			IDCluster, UnknownSize, 12, nil},
		{"unknown 1-byte size", []byte{0x18, 0x53, 0x80, 0x67, 0xFF}, IDSegment, UnknownSize, 5, nil},
		{"two-byte size", []byte{0x42, 0x82, 0x40, 0x04}, IDDocType, 4, 4, nil},
		{"empty", nil, 0, 0, 0, ErrTruncated},
		{"id cut", []byte{0x1A, 0x45}, 0, 0, 0, ErrTruncated},
		{"size cut", []byte{0xA3, 0x40}, 0, 0, 0, ErrTruncated},
		{"zero byte id", []byte{0x00, 0x81}, 0, 0, 0, ErrInvalid},
		{"five-byte id", []byte{0x08, 1, 2, 3, 4, 0x81}, 0, 0, 0, ErrInvalid},
		{"all-ones id", []byte{0xFF, 0x81}, 0, 0, 0, ErrInvalid},
		{"zero size marker", []byte{0xA3, 0x00}, 0, 0, 0, ErrInvalid},
		{"huge size", []byte{0xA3, 0x01, 0xFF, 0, 0, 0, 0, 0, 0}, 0, 0, 0, ErrInvalid},
	}
	for _, tc := range cases {
		id, size, n, _, err := ParseHeader(tc.in)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || id != tc.id || size != tc.size || n != tc.n {
			t.Errorf("%s: id %x size %d n %d err %v", tc.name, id, size, n, err)
		}
	}
}

// el builds an element with a known size.
func el(id uint32, payload ...[]byte) []byte {
	var idb [4]byte
	binary.BigEndian.PutUint32(idb[:], id)
	i := 0
	for idb[i] == 0 {
		i++
	}
	body := bytes.Join(payload, nil)
	out := append([]byte(nil), idb[i:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(len(body))) // an 8-byte size field:
	out[len(idb)-i] = 0x01                                      // its marker bit

	return append(out, body...)
}

func uintEl(id uint32, v uint64) []byte {
	return el(id, binary.BigEndian.AppendUint64(nil, v))
}

func block(track byte, rel int16, flags byte, data string) []byte {
	b := []byte{0x80 | track}
	b = binary.BigEndian.AppendUint16(b, uint16(rel))
	return append(append(b, flags), data...)
}

func testFile() []byte {
	return bytes.Join([][]byte{
		el(IDEBML, el(IDDocType, []byte("matroska"))),
		el(IDSegment,
			el(IDInfo, uintEl(IDTimestampScale, 1000)),
			el(IDTracks, el(IDTrackEntry, uintEl(IDTrackNumber, 2), uintEl(IDTrackType, 1),
				el(IDCodecID, []byte("V_VP8")), el(IDVideo, uintEl(IDPixelWidth, 64), uintEl(IDPixelHeight, 48)))),
			el(IDCluster, uintEl(IDTimestamp, 1000),
				el(IDSimpleBlock, block(2, 0, 0x80, "key")),
				el(IDVoid, []byte{0, 0}),
				el(IDBlockGroup, el(IDBlock, block(2, 40, 0, "delta")), uintEl(IDReferenceBlock, 0), uintEl(IDBlockDuration, 40)),
				el(IDBlockGroup, el(IDBlock, block(2, -5, 0, "key-in-group"))),
			),
		),
	}, nil)
}

func TestScanKnownSizes(t *testing.T) {
	data := testFile()
	var blocks []Block
	var clusters []Cluster
	f, err := Scan(bytes.NewReader(data), int64(len(data)), Visitor{
		Cluster: func(c Cluster) error { clusters = append(clusters, c); return nil },
		Block:   func(b Block) error { blocks = append(blocks, b); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.DocType != "matroska" || f.TimestampScale != 1000 || f.Torn || f.Skipped != 0 || f.End != int64(len(data)) {
		t.Errorf("file %+v", f)
	}
	if len(f.TrackList) != 1 || f.TrackList[0].Number != 2 || f.TrackList[0].CodecID != "V_VP8" || f.TrackList[0].Width != 64 {
		t.Errorf("tracks %+v", f.TrackList)
	}
	if len(clusters) != 1 || clusters[0].Timestamp != 1000 {
		t.Errorf("clusters %+v", clusters)
	}
	want := []struct {
		ts   int64
		key  bool
		dur  int64
		data string
	}{{1000, true, -1, "key"}, {1040, false, 40, "delta"}, {995, true, -1, "key-in-group"}}
	if len(blocks) != len(want) {
		t.Fatalf("%d blocks", len(blocks))
	}
	for i, w := range want {
		b := blocks[i]
		got := string(data[b.DataOffset : b.DataOffset+b.DataSize])
		if b.Timestamp != w.ts || b.Keyframe != w.key || b.Duration != w.dur || got != w.data || b.Track != 2 {
			t.Errorf("block %d: %+v %q", i, b, got)
		}
	}
}

// TestScanTruncated: every prefix scans without error and reports whatever was complete.
func TestScanTruncated(t *testing.T) {
	data := testFile()
	prev := 0
	for n := 0; n <= len(data); n++ {
		blocks := 0
		f, err := Scan(bytes.NewReader(data[:n]), int64(n), Visitor{Block: func(Block) error { blocks++; return nil }})
		if err != nil {
			if errors.Is(err, ErrNotMatroska) && prev == 0 {
				continue
			}
			t.Fatalf("prefix %d: %v", n, err)
		}
		if blocks < prev {
			t.Fatalf("prefix %d: %d blocks after %d", n, blocks, prev)
		}
		if n < len(data) && !f.Torn && blocks < 3 && f.Skipped == 0 && f.Segment.ID != 0 && n > int(f.Segment.DataOffset) {
			t.Fatalf("prefix %d: not reported torn", n)
		}
		prev = blocks
	}
	if prev != 3 {
		t.Errorf("whole file: %d blocks", prev)
	}
}

func TestVisitorError(t *testing.T) {
	data := testFile()
	stop := errors.New("stop")
	if _, err := Scan(bytes.NewReader(data), int64(len(data)), Visitor{Block: func(Block) error { return stop }}); !errors.Is(err, stop) {
		t.Errorf("visitor error: %v", err)
	}
}

package opus

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	tests := []struct {
		name   string
		packet []byte
		want   time.Duration // 0: invalid
	}{
		{"empty", nil, 0},
		{"silk nb 10ms", []byte{0 << 3}, ms(10)},
		{"silk nb 20ms", []byte{1 << 3, 1, 2}, ms(20)},
		{"silk mb 40ms", []byte{6 << 3}, ms(40)},
		{"silk wb 60ms", []byte{11 << 3}, ms(60)},
		{"hybrid swb 10ms", []byte{12 << 3}, ms(10)},
		{"hybrid fb 20ms", []byte{15 << 3}, ms(20)},
		{"celt nb 2.5ms", []byte{16 << 3}, ms(2.5)},
		{"celt wb 5ms", []byte{21 << 3}, ms(5)},
		{"celt swb 10ms", []byte{26 << 3}, ms(10)},
		{"celt fb 20ms stereo", []byte{31<<3 | 4, 0xff, 0xfe}, ms(20)},
		{"code 0 largest frame", append([]byte{31 << 3}, make([]byte, 1275)...), ms(20)},
		{"code 0 frame too large", append([]byte{31 << 3}, make([]byte, 1276)...), 0},
		{"code 1 two frames", []byte{31<<3 | 1, 1, 2}, ms(40)},
		{"code 1 two empty frames", []byte{31<<3 | 1}, ms(40)},
		{"code 1 odd payload", []byte{31<<3 | 1, 1}, 0},
		{"code 1 frames too large", append([]byte{31<<3 | 1}, make([]byte, 2*1276)...), 0},
		{"code 2", []byte{3<<3 | 2, 1, 9, 9, 9}, ms(120)},
		{"code 2 no length", []byte{31<<3 | 2}, 0},
		{"code 2 length cut short", []byte{31<<3 | 2, 252}, 0},
		{"code 2 two-byte length", append([]byte{31<<3 | 2, 252, 1}, make([]byte, 256)...), ms(40)},
		{"code 2 first frame too long", []byte{31<<3 | 2, 5, 1}, 0},
		{"code 2 second frame too long", append([]byte{31<<3 | 2, 0}, make([]byte, 1276)...), 0},
		{"code 3 no count", []byte{31<<3 | 3}, 0},
		{"code 3 zero frames", []byte{31<<3 | 3, 0}, 0},
		{"code 3 cbr 3 frames", []byte{31<<3 | 3, 3, 1, 2, 3}, ms(60)},
		{"code 3 cbr uneven", []byte{31<<3 | 3, 3, 1, 2}, 0},
		{"code 3 120ms", []byte{3<<3 | 3, 2}, ms(120)},
		{"code 3 180ms", []byte{3<<3 | 3, 3}, 0},
		{"code 3 48 frames of 2.5ms", []byte{16<<3 | 3, 48}, ms(120)},
		{"code 3 49 frames of 2.5ms", []byte{16<<3 | 3, 49}, 0},
		{"code 3 padding", []byte{31<<3 | 3, 0x41, 2, 7, 0, 0}, ms(20)},
		{"code 3 long padding", append([]byte{31<<3 | 3, 0x41, 255, 1, 7}, make([]byte, 255)...), ms(20)},
		{"code 3 padding too long", []byte{31<<3 | 3, 0x41, 5, 7}, 0},
		{"code 3 padding length cut short", []byte{31<<3 | 3, 0x41, 255}, 0},
		{"code 3 vbr", []byte{31<<3 | 3, 0x82, 1, 7, 8, 9}, ms(40)},
		{"code 3 vbr lengths too long", []byte{31<<3 | 3, 0x83, 3, 3, 7}, 0},
		{"code 3 vbr lengths cut short", []byte{31<<3 | 3, 0x83, 3}, 0},
		{"code 3 vbr last frame too long", append([]byte{31<<3 | 3, 0x82, 0}, make([]byte, 1276)...), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Duration(tt.packet)
			if tt.want == 0 {
				if !errors.Is(err, ErrInvalidPacket) {
					t.Fatalf("PacketDuration = %v, %v; want ErrInvalidPacket", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("PacketDuration = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestSamplesDurationRoundTrip(t *testing.T) {
	for _, n := range []int64{0, 1, 119, 120, 959, 960, 47999, 48000, 1<<40 + 7, 1 << 48} {
		if got := DurationToSamples(SamplesToDuration(n)); got != n {
			t.Errorf("samples %d -> %v -> %d", n, SamplesToDuration(n), got)
		}
	}
	if got := SamplesToDuration(960); got != 20*time.Millisecond {
		t.Errorf("960 samples = %v", got)
	}
	if got := SamplesToDuration(math.MaxInt64); got != math.MaxInt64 {
		t.Errorf("most samples = %v", got)
	}
	// RTP timestamps at 48 kHz turned into durations by truncation come back exact.
	for ts := int64(0); ts < 100000; ts += 137 {
		d := time.Duration(ts * int64(time.Second) / SampleRate)
		if got := DurationToSamples(d); got != ts {
			t.Fatalf("ts %d -> %v -> %d", ts, d, got)
		}
	}
}

func FuzzDuration(f *testing.F) {
	f.Add([]byte{31 << 3, 0xff, 0xfe})
	f.Add([]byte{31<<3 | 3, 0xc3, 255, 0, 1, 2, 3})
	f.Add([]byte{31<<3 | 2, 252, 1, 0})
	f.Add([]byte{0x1b, 0x82, 0xfc, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		orig := bytes.Clone(p)
		d, err := Duration(p)
		if !bytes.Equal(p, orig) {
			t.Fatal("PacketDuration changed its input")
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidPacket) {
				t.Fatalf("error %v does not wrap ErrInvalidPacket", err)
			}
			return
		}
		if d <= 0 || d > 120*time.Millisecond || d%(2500*time.Microsecond) != 0 {
			t.Fatalf("duration %v", d)
		}
		// Any valid packet stays valid as the payload of a padded code 3 packet only
		// if it is code 0; check the simplest invariant instead: code 0 is valid up to
		// 1275 payload bytes.
		if p[0]&3 == 0 && len(p) > 1276 {
			t.Fatalf("code 0 packet of %d bytes accepted", len(p))
		}
	})
}

package depacketize

import (
	"testing"

	"github.com/pion/rtp"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// benchmarkCodec pushes a fixture's packets round and round; b.N counts packets.
func benchmarkCodec(b *testing.B, codec media.Codec, mtu uint16) {
	f := loadFixture(b, codec)
	var pkts []*rtp.Packet
	for _, fr := range f.packetize(b, mtu, 1) {
		pkts = append(pkts, fr...)
	}
	d := newDepacketizer(b, codec)
	// One round first, so the frame buffers have grown to the largest frame.
	for _, p := range pkts {
		d.Push(p, 0)
	}
	bytes := 0
	for _, p := range pkts {
		bytes += len(p.Payload)
	}
	b.SetBytes(int64(bytes / len(pkts)))
	b.ReportAllocs()
	b.ResetTimer()
	frames := 0
	for i := range b.N {
		frames += len(d.Push(pkts[i%len(pkts)], 0))
	}
	b.StopTimer()
	if b.N >= len(pkts) && frames == 0 {
		b.Fatal("no frames")
	}
}

func BenchmarkVP8(b *testing.B)  { benchmarkCodec(b, media.CodecVP8, 1200) }
func BenchmarkVP9(b *testing.B)  { benchmarkCodec(b, media.CodecVP9, 1200) }
func BenchmarkAV1(b *testing.B)  { benchmarkCodec(b, media.CodecAV1, 1200) }
func BenchmarkH264(b *testing.B) { benchmarkCodec(b, media.CodecH264, 1200) }
func BenchmarkOpus(b *testing.B) { benchmarkCodec(b, media.CodecOpus, 1200) }

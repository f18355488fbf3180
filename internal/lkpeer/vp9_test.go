package lkpeer

import (
	"bytes"
	"testing"

	"github.com/pion/rtp/codecs"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// The descriptors describe the plaintext frames (key or not, resolution) while the
// payload is whatever the packetizer is given, and the fragments rebuild it.
func TestVP9PayloaderDescribesThePlaintext(t *testing.T) {
	frames, err := testmedia.Frames(testmedia.VP9)
	if err != nil {
		t.Fatal(err)
	}
	p := newVP9Payloader()
	deltas := 0
	for i, f := range frames[:10] {
		if !f.Keyframe {
			deltas++
		}
		if err := p.describe(f.Data); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		opaque := bytes.Repeat([]byte{0xa5}, len(f.Data)+2500) // "encrypted", several packets
		pkts := p.Payload(1200, opaque)
		if len(pkts) < 3 {
			t.Fatalf("frame %d: %d packets for %d bytes", i, len(pkts), len(opaque))
		}
		var rebuilt []byte
		for j, raw := range pkts {
			var d codecs.VP9Packet
			if _, err := d.Unmarshal(raw); err != nil {
				t.Fatalf("frame %d packet %d: %v", i, j, err)
			}
			if d.B != (j == 0) || d.E != (j == len(pkts)-1) || d.F || !d.I {
				t.Errorf("frame %d packet %d: B=%v E=%v F=%v I=%v", i, j, d.B, d.E, d.F, d.I)
			}
			if d.P == f.Keyframe {
				t.Errorf("frame %d packet %d: P=%v for a frame that is key=%v", i, j, d.P, f.Keyframe)
			}
			if d.V != (j == 0 && f.Keyframe) {
				t.Errorf("frame %d packet %d: V=%v", i, j, d.V)
			}
			if d.V && (len(d.Width) != 1 || d.Width[0] != 320 || d.Height[0] != 240) {
				t.Errorf("frame %d: scalability structure says %v x %v, want 320x240", i, d.Width, d.Height)
			}
			rebuilt = append(rebuilt, d.Payload...)
		}
		if !bytes.Equal(rebuilt, opaque) {
			t.Errorf("frame %d: the fragments do not rebuild the payload", i)
		}
	}
	if !frames[0].Keyframe || deltas == 0 {
		t.Fatalf("the test asset's first frames are not a key frame and delta frames (%d deltas)", deltas)
	}
}

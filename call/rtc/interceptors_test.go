package rtc

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// videoStream is how pion describes a negotiated VP8 stream with NACK and TWCC.
func videoStream() *interceptor.StreamInfo {
	return &interceptor.StreamInfo{
		SSRC: 1234, ClockRate: 90000, MimeType: webrtc.MimeTypeVP8, PayloadType: 96,
		RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 3}},
		RTCPFeedback:        []interceptor.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "transport-cc"}},
	}
}

// packetReader is a decrypted stream: VP8 packets with a TWCC sequence number.
type packetReader struct {
	t   testing.TB
	seq uint16
	pkt rtp.Packet
	ext [2]byte
}

func (p *packetReader) Read(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
	p.seq++
	p.pkt.Header = rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: p.seq, Timestamp: uint32(p.seq) * 3000, SSRC: 1234,
		Extensions: p.pkt.Extensions[:0]}
	p.ext = [2]byte{byte(p.seq >> 8), byte(p.seq)}
	_ = p.pkt.SetExtension(3, p.ext[:])
	n, err := p.pkt.MarshalTo(b)
	if err != nil {
		p.t.Fatal(err)
	}
	return n, a, nil
}

func chainFor(t testing.TB, reg *interceptor.Registry) (interceptor.RTPReader, func()) {
	chain, err := reg.Build("test")
	if err != nil {
		t.Fatal(err)
	}
	// TWCC and receiver reports send their feedback from goroutines started here.
	chain.BindRTCPWriter(interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) { return 0, nil }))
	info := videoStream()
	r := chain.BindRemoteStream(info, &packetReader{t: t})
	return r, func() { chain.UnbindRemoteStream(info); _ = chain.Close() }
}

// TestReceivePathInterceptorsDoNotAllocate: a video packet read as pion's TrackRemote reads
// it (no attributes) goes through NACK, receiver reports and TWCC without an allocation,
// where pion's chain makes a map and a header per packet; every interceptor still sees the
// packet's own header.
func TestReceivePathInterceptorsDoNotAllocate(t *testing.T) {
	reg := &interceptor.Registry{}
	if err := registerInterceptors(&webrtc.MediaEngine{}, reg); err != nil {
		t.Fatal(err)
	}
	r, done := chainFor(t, reg)
	defer done()
	b := make([]byte, 1500)
	var last uint16
	read := func() {
		n, a, err := r.Read(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := a.GetRTPHeader(b[:n])
		if err != nil {
			t.Fatal(err)
		}
		if h.SequenceNumber != last+1 {
			t.Fatalf("header of packet %d, want %d", h.SequenceNumber, last+1)
		}
		last = h.SequenceNumber
	}
	for range 100 {
		read()
	}
	if allocs := testing.AllocsPerRun(1000, read); allocs != 0 {
		t.Errorf("%v allocations per packet", allocs)
	}
}

// TestReusedAttributesBadPacket: a packet whose header does not parse fails in the
// interceptors as it would without the reuse, and the next good packet reads normally.
func TestReusedAttributesBadPacket(t *testing.T) {
	bad := false
	inner := interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		if bad {
			b[0] = 0x80
			return 5, a, nil // shorter than an RTP header
		}
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 7, SSRC: 1}}
		n, err := pkt.MarshalTo(b)
		return n, a, err
	})
	r := (&reusedAttributes{}).BindRemoteStream(videoStream(), inner)
	b := make([]byte, 1500)
	for i, want := range []bool{false, false, true, false} {
		bad = want
		n, a, err := r.Read(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := a.GetRTPHeader(b[:n])
		if want != (err != nil) {
			t.Fatalf("read %d: header error %v", i, err)
		}
		if err == nil && h.SequenceNumber != 7 {
			t.Fatalf("read %d: seq %d", i, h.SequenceNumber)
		}
	}
}

// TestReusedAttributesFreshHeader: the reused header reads as a fresh one would, with
// nothing left from the packet before (here its extensions).
func TestReusedAttributesFreshHeader(t *testing.T) {
	withExt := true
	inner := interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 7, SSRC: 1}}
		if withExt {
			_ = pkt.Header.SetExtension(3, []byte{1, 2})
		}
		n, err := pkt.MarshalTo(b)
		return n, a, err
	})
	r := (&reusedAttributes{}).BindRemoteStream(videoStream(), inner)
	b := make([]byte, 1500)
	for i, ext := range []bool{true, true, false} {
		withExt = ext
		n, a, err := r.Read(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.GetRTPHeader(b[:n])
		if err != nil {
			t.Fatal(err)
		}
		var fresh rtp.Header
		if _, err := fresh.Unmarshal(b[:n]); err != nil {
			t.Fatal(err)
		}
		if got.Extension != fresh.Extension || got.ExtensionProfile != fresh.ExtensionProfile || len(got.Extensions) != len(fresh.Extensions) || got.SequenceNumber != fresh.SequenceNumber {
			t.Fatalf("read %d: header %+v, a fresh one is %+v", i, *got, fresh)
		}
	}
}

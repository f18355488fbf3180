package rtc

import (
	"fmt"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// registerInterceptors registers what a receive-only recorder needs on the receive path, and
// nothing else (pion's defaults also run a stats interceptor on every packet, a NACK
// responder and sender reports for tracks we never send, and TWCC on audio):
//
//   - NACK generation for video, at most maxNacksPerPacket requests per lost packet;
//   - RTCP receiver reports (senders adapt to the loss and jitter they report);
//   - transport-wide congestion control feedback for video only: browsers estimate their
//     video bandwidth from it, and an audio stream's bitrate does not depend on it;
//   - the MID and RID header extensions simulcast senders need to be told apart;
//   - reusedAttributes, innermost, so that the interceptors above parse each packet's RTP
//     header into one header per stream instead of allocating one per packet.
//
// The NACK and PLI feedback for video is declared with the codecs (registerCodecs).
func registerInterceptors(m *webrtc.MediaEngine, reg *interceptor.Registry) error {
	reg.Add(reusedAttributesFactory{})

	// pion's NACK generator does not see packets repaired through RTX, so without a limit
	// it asks for each lost packet again every 100 ms until it leaves its window: about
	// 13 retransmissions per lost packet on loopback (TestIntegrationRecorderNACK).
	gen, err := nack.NewGeneratorInterceptor(nack.GeneratorMaxNacksPerPacket(maxNacksPerPacket))
	if err != nil {
		return fmt.Errorf("nack generator: %w", err)
	}
	reg.Add(gen)

	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		return fmt.Errorf("receiver reports: %w", err)
	}
	reg.Add(rr)

	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return fmt.Errorf("simulcast header extensions: %w", err)
	}

	m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, webrtc.RTPCodecTypeVideo)
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, webrtc.RTPCodecTypeVideo); err != nil {
		return fmt.Errorf("transport-cc header extension: %w", err)
	}
	tw, err := twcc.NewSenderInterceptor()
	if err != nil {
		return fmt.Errorf("twcc feedback: %w", err)
	}
	reg.Add(tw)
	return nil
}

// ReusedAttributes is the interceptor that spares each remote packet its attributes map
// and RTP header (see reusedAttributes), for a pion stack built elsewhere (the LiveKit
// SDK's). It must be registered before every interceptor that reads the header.
func ReusedAttributes() interceptor.Factory { return reusedAttributesFactory{} }

// reusedAttributesFactory builds reusedAttributes.
type reusedAttributesFactory struct{}

func (reusedAttributesFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &reusedAttributes{}, nil
}

// reusedAttributes gives every read of a remote stream the same attributes map, holding
// the same *rtp.Header, unmarshalled again in place for each packet. pion's TrackRemote
// reads with no attributes, so each interceptor that looks at the header (NACK, receiver
// reports, TWCC) would otherwise make a map and a header for every packet. Registered
// first, it is the innermost reader: it sees each packet right after decryption, before the
// others ask for its header. This relies on what pion does and documents for a remote
// track: one reader at a time (the track's Run, or Drain after it), and nothing keeps the
// attributes past the read that returned them.
type reusedAttributes struct {
	interceptor.NoOp
}

// BindRemoteStream implements interceptor.Interceptor.
func (*reusedAttributes) BindRemoteStream(_ *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	s := &reusedStream{attrs: interceptor.Attributes{}}
	return interceptor.RTPReaderFunc(s.read(reader))
}

// reusedStream is one remote stream's attributes.
type reusedStream struct {
	attrs interceptor.Attributes
	hdr   *rtp.Header // the header in attrs, nil until the first packet
}

func (s *reusedStream) read(next interceptor.RTPReader) func([]byte, interceptor.Attributes) (int, interceptor.Attributes, error) {
	return func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		if a != nil {
			return next.Read(b, a)
		}
		// Only the header survives from the packet before (an interceptor may have added
		// entries of its own).
		for k, v := range s.attrs {
			if h, ok := v.(*rtp.Header); !ok || h != s.hdr {
				delete(s.attrs, k)
			}
		}
		n, attrs, err := next.Read(b, s.attrs)
		if err != nil {
			return n, attrs, err
		}
		if s.hdr == nil {
			// The first packet: GetRTPHeader stores the header it makes in attrs.
			h, herr := s.attrs.GetRTPHeader(b[:n])
			if herr == nil {
				s.hdr = h
			}
			return n, attrs, nil
		}
		// As a fresh header would be (Unmarshal leaves fields a packet does not set, such
		// as the extension profile of a packet without extensions), keeping the slices.
		*s.hdr = rtp.Header{CSRC: s.hdr.CSRC[:0], Extensions: s.hdr.Extensions[:0]}
		if _, herr := s.hdr.Unmarshal(b[:n]); herr != nil {
			// Not a valid header: let the interceptors above parse it and fail as they would.
			for k, v := range s.attrs {
				if h, ok := v.(*rtp.Header); ok && h == s.hdr {
					delete(s.attrs, k)
				}
			}
			s.hdr = nil
		}
		return n, attrs, nil
	}
}

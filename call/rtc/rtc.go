// Package rtc builds the bot's pion WebRTC stack from configuration and connects remote
// tracks to the recorder. Every call backend that uses pion peer connections shares it.
package rtc

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
)

// Settings are the operator's WebRTC choices (config section webrtc).
type Settings struct {
	// IncludeLoopback also gathers 127.0.0.1 candidates (pion leaves loopback out by default).
	IncludeLoopback bool
	// UDPPortMin/UDPPortMax restrict ephemeral ICE ports.
	UDPPortMin, UDPPortMax uint16
	// UDPPort multiplexes every peer connection on one UDP port.
	UDPPort uint16
	// PublicIPs replace the host candidates' addresses (1:1 NAT).
	PublicIPs []string
	// Interfaces limits gathering to these interfaces.
	Interfaces []string
	// ICETimeout: a connection that stays disconnected this long is failed.
	ICETimeout time.Duration
	// Stats registers pion's statistics interceptor, so that PeerConnection.GetStats
	// reports what each inbound stream received. It runs on every packet and the bot
	// itself reads no statistics: for tests and diagnosis only.
	Stats bool
}

// maxNacksPerPacket is how often a lost packet is asked for (100 ms apart): the first
// retransmission usually arrives, two more cover one that is lost too.
const maxNacksPerPacket = 3

// udpPortReadBuffer is the receive buffer asked for the shared UDP port.
const udpPortReadBuffer = 4 << 20

// Factory creates peer connections that share one configured pion API (and, with UDPPort,
// one UDP socket).
type Factory struct {
	api   *webrtc.API
	mux   ice.UDPMux
	log   zerolog.Logger
	close func() error
}

// NewFactory configures codecs, interceptors (registerInterceptors) and the network.
func NewFactory(s Settings, log zerolog.Logger) (*Factory, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return nil, fmt.Errorf("register codecs: %w", err)
	}
	reg := &interceptor.Registry{}
	if err := registerInterceptors(m, reg); err != nil {
		return nil, fmt.Errorf("register interceptors: %w", err)
	}
	if s.Stats {
		if err := webrtc.ConfigureStatsInterceptor(reg); err != nil {
			return nil, fmt.Errorf("register the stats interceptor: %w", err)
		}
	}

	// pion's lines keep the factory's component (webrtc) and name pion's scope ("ice").
	se := webrtc.SettingEngine{LoggerFactory: pionLogger{log: log}}
	se.SetIncludeLoopbackCandidate(s.IncludeLoopback)
	// AES-GCM first (one AES pass with its authentication, cheap with AES-NI) and its
	// 128-bit key before the 256-bit one (fewer rounds, the same protection against a
	// recorded call being decrypted within its lifetime); AES-CM with HMAC-SHA1 for peers
	// that offer nothing else. The DTLS server picks: this order counts when the bot is
	// the server, the peer's own otherwise.
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	// mDNS candidates would need multicast, which a server has no use for.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if s.ICETimeout > 0 {
		se.SetICETimeouts(5*time.Second, s.ICETimeout, 2*time.Second)
	}
	if len(s.Interfaces) > 0 {
		allowed := append([]string(nil), s.Interfaces...)
		se.SetInterfaceFilter(func(name string) bool {
			for _, a := range allowed {
				if a == name {
					return true
				}
			}
			return false
		})
	}
	if len(s.PublicIPs) > 0 {
		for _, ip := range s.PublicIPs {
			if net.ParseIP(ip) == nil {
				return nil, fmt.Errorf("public ip %q is not an IP address", ip)
			}
		}
		se.SetNAT1To1IPs(s.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	f := &Factory{log: log, close: func() error { return nil }}
	switch {
	case s.UDPPort != 0:
		// Every peer's datagrams queue on this one socket: room for bursts (key frames of
		// many calls at once; the kernel caps it at net.core.rmem_max). At 40 calls on
		// the default buffer the kernel dropped datagrams (BENCHMARKS.md).
		opts := []ice.UDPMuxFromPortOption{ice.UDPMuxFromPortWithReadBufferSize(udpPortReadBuffer)}
		if s.IncludeLoopback {
			opts = append(opts, ice.UDPMuxFromPortWithLoopback())
		}
		if len(s.Interfaces) > 0 {
			allowed := append([]string(nil), s.Interfaces...)
			opts = append(opts, ice.UDPMuxFromPortWithInterfaceFilter(func(name string) bool {
				for _, a := range allowed {
					if a == name {
						return true
					}
				}
				return false
			}))
		}
		mux, err := ice.NewMultiUDPMuxFromPort(int(s.UDPPort), opts...)
		if err != nil {
			return nil, fmt.Errorf("listen on udp port %d: %w", s.UDPPort, err)
		}
		se.SetICEUDPMux(mux)
		f.mux = mux
		f.close = mux.Close
	case s.UDPPortMin != 0:
		if err := se.SetEphemeralUDPPortRange(s.UDPPortMin, s.UDPPortMax); err != nil {
			return nil, fmt.Errorf("udp port range %d-%d: %w", s.UDPPortMin, s.UDPPortMax, err)
		}
	}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6})
	f.api = webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
	return f, nil
}

// registerCodecs registers exactly what the recorder can write (the codec table), so that an
// offer in any other codec is declined in the answer instead of being received and lost.
// Video gets NACK and PLI feedback and RTX, so lost video can be retransmitted.
func registerCodecs(m *webrtc.MediaEngine) error {
	videoFB := []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"},
	}
	for _, c := range codec.All() {
		for _, f := range c.RTP {
			capability := webrtc.RTPCodecCapability{MimeType: c.MimeType, ClockRate: c.ClockRate, Channels: c.Channels, SDPFmtpLine: f.Fmtp}
			kind := webrtc.RTPCodecTypeAudio
			if c.IsVideo() {
				capability.RTCPFeedback, kind = videoFB, webrtc.RTPCodecTypeVideo
			}
			if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: capability, PayloadType: webrtc.PayloadType(f.PayloadType)}, kind); err != nil {
				return err
			}
			if !c.IsVideo() {
				continue
			}
			if err := m.RegisterCodec(webrtc.RTPCodecParameters{
				RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: c.ClockRate, SDPFmtpLine: fmt.Sprintf("apt=%d", f.PayloadType)},
				PayloadType:        webrtc.PayloadType(f.PayloadType + 1),
			}, kind); err != nil {
				return err
			}
		}
	}
	return nil
}

// API exposes the configured pion API (for backends that build their own connections).
func (f *Factory) API() *webrtc.API { return f.api }

// NewPeerConnection creates a peer connection with the given ICE servers.
func (f *Factory) NewPeerConnection(iceServers []webrtc.ICEServer) (*webrtc.PeerConnection, error) {
	pc, err := f.api.NewPeerConnection(webrtc.Configuration{
		ICEServers:    iceServers,
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
	if err != nil {
		return nil, fmt.Errorf("create peer connection: %w", err)
	}
	return pc, nil
}

// Close releases the shared UDP socket, if any.
func (f *Factory) Close() error { return f.close() }

// pionLogger routes pion's logs into zerolog at one level lower than pion's own, because
// pion logs routine events as warnings.
type pionLogger struct{ log zerolog.Logger }

func (p pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return pionLevelLogger{log: p.log.With().Str("scope", scope).Logger()}
}

type pionLevelLogger struct{ log zerolog.Logger }

func (l pionLevelLogger) Trace(msg string)          { l.log.Trace().Msg(msg) }
func (l pionLevelLogger) Tracef(f string, a ...any) { l.log.Trace().Msg(fmt.Sprintf(f, a...)) }
func (l pionLevelLogger) Debug(msg string)          { l.log.Trace().Msg(msg) }
func (l pionLevelLogger) Debugf(f string, a ...any) { l.log.Trace().Msg(fmt.Sprintf(f, a...)) }
func (l pionLevelLogger) Info(msg string)           { l.log.Debug().Msg(msg) }
func (l pionLevelLogger) Infof(f string, a ...any)  { l.log.Debug().Msg(fmt.Sprintf(f, a...)) }
func (l pionLevelLogger) Warn(msg string)           { l.log.Debug().Msg(msg) }
func (l pionLevelLogger) Warnf(f string, a ...any)  { l.log.Debug().Msg(fmt.Sprintf(f, a...)) }
func (l pionLevelLogger) Error(msg string)          { l.log.Warn().Msg(msg) }
func (l pionLevelLogger) Errorf(f string, a ...any) { l.log.Warn().Msg(fmt.Sprintf(f, a...)) }

// ParseCandidate checks that a remote candidate line is plausible before pion parses it:
// bounded length, printable, and starting with "candidate:" (with or without "a=").
func ParseCandidate(c string) (string, error) {
	c = strings.TrimSpace(strings.TrimPrefix(c, "a="))
	if len(c) > 2048 {
		return "", errors.New("candidate too long")
	}
	if !strings.HasPrefix(c, "candidate:") {
		return "", errors.New("not a candidate line")
	}
	for i := 0; i < len(c); i++ {
		if c[i] < 0x20 || c[i] == 0x7f {
			return "", errors.New("candidate has control characters")
		}
	}
	return c, nil
}

// AddCandidates adds MSC2746 remote candidates to pc: the empty end-of-candidates marker is
// skipped, and a candidate that is malformed or that pion rejects is logged and skipped, so
// one bad line never costs the others.
func AddCandidates(pc *webrtc.PeerConnection, cands []voip.Candidate, log zerolog.Logger) {
	for _, c := range cands {
		if c.Candidate == "" {
			continue // end of candidates
		}
		line, err := ParseCandidate(c.Candidate)
		if err != nil {
			log.Debug().Err(err).Msg("Ignoring bad remote candidate")
			continue
		}
		init := webrtc.ICECandidateInit{Candidate: line, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
		if err := pc.AddICECandidate(init); err != nil {
			log.Debug().Err(err).Str("candidate", line).Msg("Ignoring remote candidate pion rejects")
		}
	}
}

package testmedia

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pion/rtp"
)

// RTPSource plays the Opus frames of an asset as RTP packets (payload type 111, SSRC 42),
// as fast as they are read, then io.EOF: a recorder.PacketSource for tests that need a
// real track's media without a peer connection.
type RTPSource struct {
	pkts [][]byte

	mu   sync.Mutex
	read int
}

// NewOpusRTP returns a source of the first n Opus frames of an asset (n <= 0: all).
func NewOpusRTP(name string, n int) (*RTPSource, error) {
	frames, err := OpusFrames(name)
	if err != nil {
		return nil, err
	}
	if n <= 0 || n > len(frames) {
		n = len(frames)
	}
	s := &RTPSource{}
	ts := uint32(1000)
	for i, f := range frames[:n] {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i + 1), Timestamp: ts, SSRC: 42}, Payload: f.Data}
		b, err := p.Marshal()
		if err != nil {
			return nil, fmt.Errorf("packetize %s: %w", name, err)
		}
		s.pkts = append(s.pkts, b)
		ts += uint32(f.Duration.Seconds() * 48000)
	}
	return s, nil
}

// Len is how many packets the source plays.
func (s *RTPSource) Len() int { return len(s.pkts) }

// Read is how many packets were read so far.
func (s *RTPSource) Read() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read
}

// ReadPacket copies the next packet into b.
func (s *RTPSource) ReadPacket(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.read >= len(s.pkts) {
		return 0, io.EOF
	}
	n := copy(b, s.pkts[s.read])
	s.read++
	return n, nil
}

// SetReadDeadline does nothing: a packet is always there until the end.
func (s *RTPSource) SetReadDeadline(time.Time) error { return nil }

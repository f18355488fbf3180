package jitter_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pion/rtp"

	"github.com/matrix-recorder/matrix-recorder/recorder/jitter"
)

// source is what a track's read loop reads from; a pion *webrtc.TrackRemote does it with
// Read(b) (dropping the attributes) and SetReadDeadline.
type source interface {
	ReadPacket(b []byte) (int, error)
	SetReadDeadline(t time.Time) error
}

// readLoop is the shape of one track's goroutine: read into one reused buffer, push, pop
// everything that is due, and let the read deadline wake the loop when a missing packet's
// wait is over.
func readLoop(src source, handle func(p *jitter.Packet)) error {
	jb := jitter.New(250 * time.Millisecond)
	buf := make([]byte, 1500)
	for {
		deadline, ok := jb.NextDeadline()
		if !ok {
			deadline = time.Time{} // nothing waiting: block until the next packet
		}
		if err := src.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("set read deadline: %w", err)
		}
		n, err := src.ReadPacket(buf)
		now := time.Now()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// A missing packet's wait is over: Pop below declares it lost.
		case err != nil:
			for p, ok := jb.Drain(); ok; p, ok = jb.Drain() {
				handle(p)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read rtp: %w", err)
		default:
			if _, err := jb.Push(buf[:n], now); err != nil {
				// Malformed packets are counted in Stats; nothing else to do.
				continue
			}
		}
		for p, ok := jb.Pop(now); ok; p, ok = jb.Pop(now) {
			handle(p)
		}
	}
}

// scripted replays packets, then reports the end of the track.
type scripted struct{ pkts [][]byte }

func (s *scripted) ReadPacket(b []byte) (int, error) {
	if len(s.pkts) == 0 {
		return 0, io.EOF
	}
	n := copy(b, s.pkts[0])
	s.pkts = s.pkts[1:]
	return n, nil
}

func (s *scripted) SetReadDeadline(time.Time) error { return nil }

func Example() {
	src := &scripted{}
	for _, seq := range []uint16{1, 2, 4, 3, 6} {
		p := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, SSRC: 1}, Payload: []byte{0}}
		raw, _ := p.Marshal()
		src.pkts = append(src.pkts, raw)
	}
	err := readLoop(src, func(p *jitter.Packet) {
		fmt.Printf("seq %d lost before %d\n", p.SequenceNumber, p.LostBefore)
	})
	fmt.Println("end:", err)
	// Output:
	// seq 1 lost before 0
	// seq 2 lost before 0
	// seq 3 lost before 0
	// seq 4 lost before 0
	// seq 6 lost before 1
	// end: <nil>
}

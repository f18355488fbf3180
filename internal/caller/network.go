package caller

import (
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// Impairment is network trouble on the caller's outgoing RTP. It sits below pion's NACK
// responder (next to the wire), so the responder keeps every packet and can retransmit
// what this stage drops, as over a real lossy path; retransmissions go through it too.
type Impairment struct {
	// Loss, Duplicate and Reorder are the shares of packets lost, sent twice, or held
	// back by ReorderDelay (so that later packets overtake them).
	Loss, Duplicate, Reorder float64
	ReorderDelay             time.Duration
	// Kind limits the trouble to "audio" or "video" streams (empty: both).
	Kind string
	// Seed makes the pattern repeatable.
	Seed uint64
}

// NetworkStats counts what the impairment did.
type NetworkStats struct {
	// Packets are the media packets the caller sent (retransmissions not counted).
	Packets uint64
	// Retransmissions are packets pion's NACK responder resent (RTX) after a NACK.
	Retransmissions           uint64
	Lost, Duplicated, Delayed uint64
}

type impairFactory struct {
	imp   Impairment
	mu    sync.Mutex
	rng   *rand.Rand
	stats NetworkStats
}

func newImpairFactory(imp Impairment) *impairFactory {
	return &impairFactory{imp: imp, rng: rand.New(rand.NewPCG(imp.Seed, imp.Seed^0x5851f42d4c957f2d))}
}

func (f *impairFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &impairInterceptor{f: f}, nil
}

func (f *impairFactory) Stats() NetworkStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

type impairInterceptor struct {
	interceptor.NoOp
	f *impairFactory
}

type fate int

const (
	fateSend fate = iota
	fateLose
	fateDuplicate
	fateDelay
)

// BindLocalStream wraps the writer of an outgoing stream with the impairment.
func (i *impairInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	f := i.f
	if f.imp.Kind != "" && !strings.HasPrefix(strings.ToLower(info.MimeType), f.imp.Kind+"/") {
		return w
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		f.mu.Lock()
		if h.SSRC == info.SSRC {
			f.stats.Packets++
		} else {
			f.stats.Retransmissions++
		}
		x := f.rng.Float64()
		imp := f.imp
		out := fateSend
		switch {
		case x < imp.Loss:
			out = fateLose
			f.stats.Lost++
		case x < imp.Loss+imp.Duplicate:
			out = fateDuplicate
			f.stats.Duplicated++
		case x < imp.Loss+imp.Duplicate+imp.Reorder:
			out = fateDelay
			f.stats.Delayed++
		}
		f.mu.Unlock()
		switch out {
		case fateLose:
			return h.MarshalSize() + len(payload), nil
		case fateDuplicate:
			if _, err := w.Write(h, payload, a); err != nil {
				return 0, err
			}
		case fateDelay:
			hc := h.Clone()
			pc := append([]byte(nil), payload...)
			time.AfterFunc(imp.ReorderDelay, func() { _, _ = w.Write(&hc, pc, a) })
			return h.MarshalSize() + len(payload), nil
		}
		return w.Write(h, payload, a)
	})
}

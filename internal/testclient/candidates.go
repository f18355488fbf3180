package testclient

import (
	"sync"

	"github.com/pion/webrtc/v4"

	"github.com/matrix-recorder/matrix-recorder/call/voip"
)

// Candidates are the remote ICE candidates of a peer's call: those that come before the
// remote description is set are kept, as matrix-js-sdk's MatrixCall keeps them, and added
// once it is (Ready). The empty candidate (the end of the candidates) is not added. The
// zero value is ready to use.
type Candidates struct {
	mu      sync.Mutex
	ready   bool
	pending []voip.Candidate
}

// Add adds cs to pc, or keeps them until Ready.
func (c *Candidates) Add(pc *webrtc.PeerConnection, cs []voip.Candidate) {
	c.mu.Lock()
	if !c.ready {
		c.pending = append(c.pending, cs...)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	addCandidates(pc, cs)
}

// Ready says pc's remote description is set: the candidates kept are added, and those
// that come from now on are added at once.
func (c *Candidates) Ready(pc *webrtc.PeerConnection) {
	c.mu.Lock()
	c.ready = true
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	addCandidates(pc, pending)
}

func addCandidates(pc *webrtc.PeerConnection, cs []voip.Candidate) {
	for _, c := range cs {
		if c.Candidate == "" {
			continue
		}
		_ = pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
	}
}

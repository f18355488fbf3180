package peer

import (
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/matrix-recorder/matrix-recorder/call/voip"
)

// hasUsableMedia reports whether an SDP answer accepts at least one audio or video m-line
// (a rejected one has port 0): if not, the offer had nothing the recorder can write.
func hasUsableMedia(sdp string) bool {
	for _, line := range strings.Split(sdp, "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) > 3 && (f[0] == "m=audio" || f[0] == "m=video") && f[1] != "0" {
			return true
		}
	}
	return false
}

// localCandidates queues a peer connection's local ICE candidates for MSC2746 signalling,
// the way matrix-js-sdk sends them: those already inside the signalled SDP are not sent
// again, the rest go out in m.call.candidates batches, and the end of gathering is the
// empty candidate. It belongs to one call's loop and is not safe for concurrent use.
type localCandidates struct {
	queue []voip.Candidate
	inSDP map[string]bool
}

// Add queues a gathered candidate; nil (gathering finished) queues the end-of-candidates
// marker. It reports whether anything was queued.
func (l *localCandidates) Add(c *webrtc.ICECandidate) bool {
	if c == nil {
		l.queue = append(l.queue, voip.Candidate{Candidate: ""})
		return true
	}
	init := c.ToJSON()
	if l.inSDP[init.Candidate] {
		return false
	}
	l.queue = append(l.queue, voip.Candidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex})
	return true
}

// Signalled records the candidates inside an SDP about to be sent, so that they are not
// sent again, and drops queued copies of them.
func (l *localCandidates) Signalled(sdp string) {
	l.inSDP = map[string]bool{}
	for _, line := range strings.Split(sdp, "\n") {
		if s := strings.TrimSpace(line); strings.HasPrefix(s, "a=candidate:") {
			l.inSDP[strings.TrimPrefix(s, "a=")] = true
		}
	}
	kept := l.queue[:0]
	for _, c := range l.queue {
		if c.Candidate == "" || !l.inSDP[c.Candidate] {
			kept = append(kept, c)
		}
	}
	l.queue = kept
}

// Len is the number of queued candidates.
func (l *localCandidates) Len() int { return len(l.queue) }

// Take returns the queued candidates and empties the queue.
func (l *localCandidates) Take() []voip.Candidate {
	b := l.queue
	l.queue = nil
	return b
}

// Requeue puts a batch that could not be sent back in front of the queue.
func (l *localCandidates) Requeue(batch []voip.Candidate) {
	l.queue = append(batch, l.queue...)
}

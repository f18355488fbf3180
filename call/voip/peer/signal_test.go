package peer

import (
	"testing"

	"github.com/matrix-recorder/matrix-recorder/call/voip"
)

func TestHasUsableMedia(t *testing.T) {
	cases := map[string]bool{
		"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n":                  true,
		"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n":                   true,
		"v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\n":                    false,
		"v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n": false,
		"":          false,
		"m=audio 9": false,
	}
	for sdp, want := range cases {
		if got := hasUsableMedia(sdp); got != want {
			t.Errorf("hasUsableMedia(%q) = %v, want %v", sdp, got, want)
		}
	}
}

func TestLocalCandidatesSkipWhatTheSDPCarries(t *testing.T) {
	var l localCandidates
	l.queue = append(l.queue, cand("candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"), cand("candidate:2 1 udp 1694498815 1.2.3.4 5000 typ srflx"))
	l.Signalled("v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n")
	if l.Len() != 1 {
		t.Fatalf("queued %d, want only the candidate the SDP lacks", l.Len())
	}
	if !l.Add(nil) || l.Len() != 2 {
		t.Fatal("end of gathering not queued")
	}
	b := l.Take()
	if l.Len() != 0 || b[1].Candidate != "" {
		t.Fatalf("take: %+v", b)
	}
	l.Requeue(b)
	if l.Len() != 2 {
		t.Fatal("requeue lost candidates")
	}
}

func cand(s string) voip.Candidate { return voip.Candidate{Candidate: s} }

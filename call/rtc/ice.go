package rtc

import (
	"context"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// TURNFunc fetches short-lived TURN credentials (the homeserver's /voip/turnServer): the
// server, nil when there is none, and how long the credentials last (0: not said).
type TURNFunc func(ctx context.Context) (*webrtc.ICEServer, time.Duration, error)

// ICEServers gives every new peer connection its STUN/TURN servers: the operator's, and
// TURN credentials fetched when needed and kept for half their lifetime (five minutes when
// the server does not say, or gives none). Safe for concurrent use.
type ICEServers struct {
	static []webrtc.ICEServer
	turn   TURNFunc

	mu     sync.Mutex
	cached []webrtc.ICEServer
	until  time.Time
}

// turnTimeout bounds one fetch; turnRetry is how long an answer without a lifetime (or a
// failure) is kept.
const (
	turnTimeout = 5 * time.Second
	turnRetry   = 5 * time.Minute
)

// NewICEServers returns the servers static plus those turn fetches (nil: none).
func NewICEServers(static []webrtc.ICEServer, turn TURNFunc) *ICEServers {
	return &ICEServers{static: static, turn: turn}
}

// Get returns the servers for a new peer connection. A failed fetch leaves the TURN
// server out until it is tried again; the error is returned for the log. A nil
// ICEServers has none.
func (s *ICEServers) Get(ctx context.Context) ([]webrtc.ICEServer, error) {
	if s == nil {
		return nil, nil
	}
	out := append([]webrtc.ICEServer(nil), s.static...)
	if s.turn == nil {
		return out, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Before(s.until) {
		return append(out, s.cached...), nil
	}
	ctx, cancel := context.WithTimeout(ctx, turnTimeout)
	defer cancel()
	server, ttl, err := s.turn(ctx)
	s.cached, s.until = nil, now.Add(turnRetry)
	if err != nil {
		return out, err
	}
	if server != nil {
		s.cached = []webrtc.ICEServer{*server}
		if ttl > 0 {
			s.until = now.Add(ttl / 2)
		}
	}
	return append(out, s.cached...), nil
}

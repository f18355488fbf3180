package rtc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TURN credentials are fetched once and kept for half their lifetime; a failure keeps the
// operator's servers and is tried again later, not on every call.
func TestICEServersCacheTURN(t *testing.T) {
	static := []webrtc.ICEServer{{URLs: []string{"stun:stun.example.org"}}}
	fetches := 0
	var fail error
	s := NewICEServers(static, func(context.Context) (*webrtc.ICEServer, time.Duration, error) {
		fetches++
		if fail != nil {
			return nil, 0, fail
		}
		return &webrtc.ICEServer{URLs: []string{"turn:turn.example.org"}, Username: "u", Credential: "p"}, 2 * time.Hour, nil
	})
	for range 3 {
		got, err := s.Get(context.Background())
		if err != nil || len(got) != 2 || got[1].Username != "u" {
			t.Fatalf("servers %+v, %v", got, err)
		}
	}
	if fetches != 1 {
		t.Errorf("%d fetches, want 1 within the credentials' lifetime", fetches)
	}
	s.until = time.Now().Add(-time.Second) // the credentials are half through their life
	fail = errors.New("no TURN")
	if got, err := s.Get(context.Background()); err == nil || len(got) != 1 {
		t.Errorf("after a failed fetch: %+v, %v", got, err)
	}
	if got, _ := s.Get(context.Background()); len(got) != 1 || fetches != 2 {
		t.Errorf("a failure is fetched again at once: %d fetches, %+v", fetches, got)
	}
	if got, _ := NewICEServers(static, nil).Get(context.Background()); len(got) != 1 {
		t.Errorf("without TURN: %+v", got)
	}
}

package bot

import (
	"context"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// turnCache keeps the homeserver's TURN credentials until half their lifetime.
type turnCache struct {
	mu      sync.Mutex
	servers []webrtc.ICEServer
	until   time.Time
}

func (b *Bot) iceServers(ctx context.Context) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range b.cfg.WebRTC.ICEServers {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	if !b.cfg.WebRTC.UseHomeserverTURN {
		return out
	}
	b.turn.mu.Lock()
	defer b.turn.mu.Unlock()
	if time.Now().Before(b.turn.until) {
		return append(out, b.turn.servers...)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := b.client.TurnServer(ctx)
	b.turn.servers = nil
	b.turn.until = time.Now().Add(5 * time.Minute)
	if err != nil {
		b.log.Debug().Err(err).Msg("Homeserver gave no TURN server")
		return out
	}
	if len(resp.URIs) > 0 {
		b.turn.servers = []webrtc.ICEServer{{URLs: resp.URIs, Username: resp.Username, Credential: resp.Password}}
		if resp.TTL > 0 {
			b.turn.until = time.Now().Add(time.Duration(resp.TTL) * time.Second / 2)
		}
	}
	return append(out, b.turn.servers...)
}

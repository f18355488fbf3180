package bot

import (
	"context"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/matrix-recorder/matrix-recorder/call/rtc"
)

// newICEServers gives calls the operator's STUN/TURN servers (webrtc.ice_servers) and,
// with webrtc.use_homeserver_turn, the homeserver's TURN credentials.
func (b *Bot) newICEServers() *rtc.ICEServers {
	var static []webrtc.ICEServer
	for _, s := range b.cfg.WebRTC.ICEServers {
		static = append(static, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	if !b.cfg.WebRTC.UseHomeserverTURN {
		return rtc.NewICEServers(static, nil)
	}
	return rtc.NewICEServers(static, func(ctx context.Context) (*webrtc.ICEServer, time.Duration, error) {
		resp, err := b.client.TurnServer(ctx)
		if err != nil || len(resp.URIs) == 0 {
			return nil, 0, err
		}
		return &webrtc.ICEServer{URLs: resp.URIs, Username: resp.Username, Credential: resp.Password}, time.Duration(resp.TTL) * time.Second, nil
	})
}

// iceServers returns the STUN/TURN servers for a new call.
func (b *Bot) iceServers(ctx context.Context) []webrtc.ICEServer {
	servers, err := b.ice.Get(ctx)
	if err != nil {
		b.log.Debug().Err(err).Msg("Homeserver gave no TURN server")
	}
	return servers
}

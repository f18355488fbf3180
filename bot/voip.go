package bot

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/onetoone"
	"github.com/matrix-recorder/matrix-recorder/recorder"
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

// voipObserver turns call life-cycle events into notices in the room.
type voipObserver struct{ b *Bot }

func (o voipObserver) CallStarted(ctx context.Context, st onetoone.Status) {
	if !o.b.cfg.Bot.Notices {
		return
	}
	text := fmt.Sprintf("🔴 Recording this call with %s. Every track is saved as its own file. Hang up to stop.", st.Peer)
	o.b.lc.Started(st.Folder, o.b.notice(ctx, st.RoomID, text, ""), text)
}

func (o voipObserver) CallEnded(ctx context.Context, st onetoone.Status, m recorder.Manifest, err error) {
	o.b.postCallEnded(st.RoomID, st.Folder, m) // picture, exports, transcripts (postcall.go)
	headline := ""
	if st.Why != "" {
		headline = "Call ended: " + st.Why + "."
	}
	// The summary with links; silent without bot.notices.
	o.b.lc.Ended(st.RoomID, st.Folder, m, headline, err, o.b.cfg.Bot.Notices)
}

func (o voipObserver) CallRefused(ctx context.Context, roomID id.RoomID, sender id.UserID, reason string) {
	if !o.b.cfg.Bot.Notices {
		return
	}
	o.b.notice(ctx, roomID, fmt.Sprintf("I did not answer the call from %s: %s.", sender, reason), "")
}

package lkpeer

import (
	"context"
	"errors"
	"fmt"

	protologger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/rs/zerolog"
)

// Direct connects a participant straight to a LiveKit room with a token the test minted
// with the server's API key, without Matrix: a participant of a La Suite Meet room, or of
// any LiveKit room an operator runs. It publishes with Publish like a joined peer (never
// encrypted); Disconnect ends it.
func Direct(ctx context.Context, url, token string, log zerolog.Logger) (*Peer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	room, err := lksdk.ConnectToRoomWithToken(url, token, lksdk.NewRoomCallback(),
		lksdk.WithAutoSubscribe(false), lksdk.WithLogger(protologger.GetDiscardLogger()))
	if err != nil {
		return nil, fmt.Errorf("connect to LiveKit: %w", err)
	}
	p := &Peer{log: log.With().Str("identity", room.LocalParticipant.Identity()).Logger(), lkRoom: room}
	p.log.Info().Str("livekit_room", room.Name()).Msg("Connected to the LiveKit room")
	return p, nil
}

// Disconnect stops every track and leaves the LiveKit room, without touching Matrix (for
// peers made by Direct).
func (p *Peer) Disconnect() error { return p.leaveSFU() }

// leaveSFU stops every track and leaves the LiveKit room.
func (p *Peer) leaveSFU() error {
	p.mu.Lock()
	tracks := p.tracks
	p.tracks = nil
	room := p.lkRoom
	p.lkRoom = nil
	p.mu.Unlock()
	var errs []error
	for _, t := range tracks {
		errs = append(errs, t.Stop())
	}
	if room != nil {
		room.Disconnect()
	}
	return errors.Join(errs...)
}

package bot

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// directRooms finds or creates the bot's direct chat with a user (storage.links_by_dm):
// the rooms it made are kept in its m.direct account data, as clients do.
type directRooms struct {
	mu sync.Mutex // one creation at a time, so two requests do not make two rooms
}

// directRoom returns a direct chat with user that the bot is in, creating it (encrypted,
// the user invited) if there is none.
func (b *Bot) directRoom(ctx context.Context, user id.UserID) (id.RoomID, error) {
	b.dms.mu.Lock()
	defer b.dms.mu.Unlock()
	direct := map[id.UserID][]id.RoomID{}
	err := b.client.GetAccountData(ctx, event.AccountDataDirectChats.Type, &direct)
	if err != nil && !errors.Is(err, mautrix.MNotFound) {
		return "", fmt.Errorf("read the direct chats: %w", err)
	}
	ss := b.client.StateStore
	for _, room := range direct[user] {
		if ss.IsInRoom(ctx, room, b.client.UserID) && ss.IsMembership(ctx, room, user, event.MembershipJoin, event.MembershipInvite) {
			return room, nil
		}
	}
	resp, err := b.client.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset:   "trusted_private_chat",
		IsDirect: true,
		Invite:   []id.UserID{user},
		Name:     "Recordings",
		InitialState: []*event.Event{{
			Type:    event.StateEncryption,
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
		}},
	})
	if err != nil {
		return "", fmt.Errorf("create a direct chat: %w", err)
	}
	direct[user] = append(direct[user], resp.RoomID)
	if err := b.client.SetAccountData(ctx, event.AccountDataDirectChats.Type, direct); err != nil {
		b.log.Warn().Err(err).Msg("Could not remember the new direct chat")
	}
	return resp.RoomID, nil
}

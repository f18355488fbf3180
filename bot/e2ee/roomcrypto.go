package e2ee

import (
	"context"
	"slices"
	"sync"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// MembersFirst is the client's crypto helper with one rule added: before the first
// message the bot encrypts in a room (in this process), the state store learns the room's
// full member list from the homeserver.
//
// Without it, a notice sent right after joining (the greeting, "Recording started") starts
// a Megolm session that mautrix shares only with the members its state store knows at that
// moment: before the room's first sync that is at most the inviter. Members the store learns
// of later whose membership did not change in that sync (joined long before, or
// invite→join) are no reason for mautrix to share the session again, so every later notice
// stays undecryptable for them. If loading the members reveals users the current session
// was not shared with, the session is dropped, and the next message starts one shared
// with everybody.
type MembersFirst struct {
	*cryptohelper.CryptoHelper
	client *mautrix.Client
	log    zerolog.Logger

	mu     sync.Mutex
	loaded map[id.RoomID]bool
}

// NewMembersFirst wraps the crypto helper h of client.
func NewMembersFirst(h *cryptohelper.CryptoHelper, client *mautrix.Client, log zerolog.Logger) *MembersFirst {
	return &MembersFirst{CryptoHelper: h, client: client, log: log, loaded: make(map[id.RoomID]bool)}
}

// Encrypt loads the room's members once, then encrypts as cryptohelper does.
func (c *MembersFirst) Encrypt(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) (*event.EncryptedEventContent, error) {
	c.loadMembers(ctx, roomID)
	return c.CryptoHelper.Encrypt(ctx, roomID, evtType, content)
}

func (c *MembersFirst) loadMembers(ctx context.Context, roomID id.RoomID) {
	c.mu.Lock()
	defer c.mu.Unlock() // one room at a time: encryption is serialised per room anyway
	if c.loaded[roomID] {
		return
	}
	log := c.log.With().Stringer("room_id", roomID).Logger()
	store := c.client.StateStore
	before, err := store.GetRoomJoinedOrInvitedMembers(ctx, roomID)
	if err != nil {
		log.Warn().Err(err).Msg("Could not read the room's members from the state store")
		return
	}
	// Members updates the state store with what the homeserver says.
	if _, err := c.client.Members(ctx, roomID); err != nil {
		log.Warn().Err(err).Msg("Could not load the room's members before encrypting; the message may not be readable by all of them")
		return
	}
	after, err := store.GetRoomJoinedOrInvitedMembers(ctx, roomID)
	if err != nil {
		log.Warn().Err(err).Msg("Could not read the room's members from the state store")
		return
	}
	c.loaded[roomID] = true
	for _, u := range after {
		if !slices.Contains(before, u) {
			if err := c.Machine().CryptoStore.RemoveOutboundGroupSession(ctx, roomID); err != nil {
				log.Warn().Err(err).Msg("Could not drop the room's Megolm session after loading its members")
			}
			log.Debug().Int("members", len(after)).Msg("Loaded the room's members before encrypting; new session for all of them")
			return
		}
	}
}

// Forget makes the next message in roomID load its members again (the bot left the room).
func (c *MembersFirst) Forget(roomID id.RoomID) {
	c.mu.Lock()
	delete(c.loaded, roomID)
	c.mu.Unlock()
}

package bot

import (
	"context"
	"sync"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// syncPosition is the client's sync store (the crypto store: SQLite or PostgreSQL) with the
// position kept here, advanced only once the database has taken it.
//
// mautrix saves the next batch's token before it processes a sync response, and returns
// from the sync without processing it when the save fails; the bot's sync loop then syncs
// again from the stored position. But the crypto store keeps the token in memory before
// it writes it, so after a failed write it hands out the token it could not store, and the
// response that was never processed (a hangup that came while PostgreSQL was down) is
// skipped for good. Here a failed save leaves the position where it was: the same events
// come again, and are handled, once the database is back.
type syncPosition struct {
	mautrix.SyncStore

	mu     sync.Mutex
	loaded bool
	next   string
}

func newSyncPosition(s mautrix.SyncStore) *syncPosition { return &syncPosition{SyncStore: s} }

// SaveNextBatch stores token and moves the position only if the store took it.
func (p *syncPosition) SaveNextBatch(ctx context.Context, user id.UserID, token string) error {
	if err := p.SyncStore.SaveNextBatch(ctx, user, token); err != nil {
		return err
	}
	p.mu.Lock()
	p.next, p.loaded = token, true
	p.mu.Unlock()
	return nil
}

// LoadNextBatch reads the position from the store once, then answers from memory: the
// store's own copy may be a token it failed to write.
func (p *syncPosition) LoadNextBatch(ctx context.Context, user id.UserID) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded {
		token, err := p.SyncStore.LoadNextBatch(ctx, user)
		if err != nil {
			return "", err
		}
		p.next, p.loaded = token, true
	}
	return p.next, nil
}

package lifecycle

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

// OptOuts returns who asked not to be recorded in which room, and since when, as the
// state database keeps it across restarts.
func (lc *Lifecycle) OptOuts(ctx context.Context) (map[id.RoomID]map[id.UserID]time.Time, error) {
	list, err := lc.db.OptOuts(ctx)
	if err != nil {
		return nil, err
	}
	out := map[id.RoomID]map[id.UserID]time.Time{}
	for _, o := range list {
		room := id.RoomID(o.RoomID)
		if out[room] == nil {
			out[room] = map[id.UserID]time.Time{}
		}
		out[room][id.UserID(o.UserID)] = o.Since
	}
	return out, nil
}

// SetOptOut keeps (out) or forgets that user asked not to be recorded in room.
func (lc *Lifecycle) SetOptOut(ctx context.Context, room id.RoomID, user id.UserID, out bool, at time.Time) error {
	if out {
		return lc.db.SetOptOut(ctx, string(room), string(user), at)
	}
	return lc.db.ClearOptOut(ctx, string(room), string(user))
}

// Answered records that the recording in folder is of a direct call the bot answered for
// caller (with the call's intent), so that a resume after a restart continues it as one.
// It is written with the recording's rows.
func (lc *Lifecycle) Answered(folder string, caller id.UserID, intent string) {
	folder = filepath.Base(folder)
	lc.mu.Lock()
	lr := lc.live[folder]
	q := lc.queues[folder]
	lc.mu.Unlock()
	if lr == nil || q == nil {
		return
	}
	lc.post(q, func(ctx context.Context) {
		lc.writeRow(ctx, lr, q, "answer", func(ctx context.Context) error {
			recID, err := lc.rowOf(lr)
			if err != nil {
				return err
			}
			if err := lc.db.SetAnswer(ctx, storage.Answer{RecordingID: recID, Caller: string(caller), Intent: intent}); err != nil {
				return fmt.Errorf("record the answered call (a restart would resume it as a group call): %w", err)
			}
			return nil
		})
	})
}

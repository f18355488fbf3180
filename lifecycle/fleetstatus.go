package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

// RecordingOwner is a live recording of a room and the instance of a fleet that records
// it: the holder of its room's lease (storage.WatchResource, fleet.go).
type RecordingOwner struct {
	ID        string
	Folder    string
	StartedAt time.Time
	// Instance holds the recording's lease ("" when no instance does).
	Instance string
	// Expired: its holder stopped renewing the lease (died, or lost the database), and
	// another instance may take it over.
	Expired bool
	// Local: this process writes it.
	Local bool
}

// maxStatusRecordings bounds the recordings of a room !status looks at.
const maxStatusRecordings = 20

// RecordingOwners lists the room's live recordings in the state database, newest first,
// with the instance that holds each one's lease (!status on a shared database).
func (lc *Lifecycle) RecordingOwners(ctx context.Context, roomID string) ([]RecordingOwner, error) {
	recs, err := lc.db.RecordingsInRoom(ctx, roomID, maxStatusRecordings)
	if err != nil {
		return nil, fmt.Errorf("list the room's recordings: %w", err)
	}
	var now time.Time
	var out []RecordingOwner
	for _, r := range recs {
		if !r.Status.Live() {
			continue
		}
		lc.mu.Lock()
		_, local := lc.live[r.Folder]
		lc.mu.Unlock()
		o := RecordingOwner{ID: r.ID, Folder: r.Folder, StartedAt: r.StartedAt, Local: local}
		l, err := lc.db.Lease(ctx, storage.WatchResource(r.RoomID))
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			if now.IsZero() {
				if now, err = lc.db.DatabaseTime(ctx); err != nil {
					return nil, err
				}
			}
			o.Instance = LeaseInstance(l.Owner)
			o.Expired = !l.ExpiresAt.After(now)
		}
		out = append(out, o)
	}
	return out, nil
}

// LeaseInstance is the instance id of a lease's owner ("instance" or "instance/token").
func LeaseInstance(owner string) string {
	inst, _, _ := strings.Cut(owner, "/")
	return inst
}

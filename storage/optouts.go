package storage

import (
	"context"
	"fmt"
	"time"
)

// OptOut is someone who asked not to be recorded in a room, and since when.
type OptOut struct {
	RoomID string
	UserID string
	Since  time.Time
}

// SetOptOut records that user asked not to be recorded in room (since at); asking again
// keeps the first time.
func (d *DB) SetOptOut(ctx context.Context, roomID, userID string, at time.Time) error {
	_, err := d.db.Exec(ctx, `INSERT INTO opt_outs (room_id, user_id, since) VALUES ($1, $2, $3)
		ON CONFLICT (room_id, user_id) DO NOTHING`, roomID, userID, at.UnixMilli())
	if err != nil {
		return fmt.Errorf("record the opt-out of %s in %s: %w", userID, roomID, err)
	}
	return nil
}

// ClearOptOut forgets an opt-out (the user asked to be recorded again).
func (d *DB) ClearOptOut(ctx context.Context, roomID, userID string) error {
	if _, err := d.db.Exec(ctx, `DELETE FROM opt_outs WHERE room_id = $1 AND user_id = $2`, roomID, userID); err != nil {
		return fmt.Errorf("forget the opt-out of %s in %s: %w", userID, roomID, err)
	}
	return nil
}

// OptOuts lists every opt-out, by room.
func (d *DB) OptOuts(ctx context.Context) ([]OptOut, error) {
	rows, err := d.db.Query(ctx, `SELECT room_id, user_id, since FROM opt_outs ORDER BY room_id, since`)
	if err != nil {
		return nil, fmt.Errorf("list opt-outs: %w", err)
	}
	defer rows.Close()
	var out []OptOut
	for rows.Next() {
		var o OptOut
		var since int64
		if err := rows.Scan(&o.RoomID, &o.UserID, &since); err != nil {
			return nil, fmt.Errorf("list opt-outs: %w", err)
		}
		o.Since = time.UnixMilli(since).UTC()
		out = append(out, o)
	}
	return out, rows.Err()
}

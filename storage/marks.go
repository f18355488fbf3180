package storage

import (
	"context"
	"fmt"
	"time"
)

// SetNameMark records that the bot's display name in a room may carry the recording mark
// (before the mark is sent).
func (d *DB) SetNameMark(ctx context.Context, roomID string, at time.Time) error {
	_, err := d.db.Exec(ctx, `INSERT INTO name_marks (room_id, marked_at) VALUES ($1, $2)
		ON CONFLICT (room_id) DO NOTHING`, roomID, at.UnixMilli())
	if err != nil {
		return fmt.Errorf("record the name mark in %s: %w", roomID, err)
	}
	return nil
}

// ClearNameMark forgets a room's mark (its plain name is back).
func (d *DB) ClearNameMark(ctx context.Context, roomID string) error {
	if _, err := d.db.Exec(ctx, `DELETE FROM name_marks WHERE room_id = $1`, roomID); err != nil {
		return fmt.Errorf("forget the name mark in %s: %w", roomID, err)
	}
	return nil
}

// NameMarks lists the rooms whose bot display name may carry the recording mark.
func (d *DB) NameMarks(ctx context.Context) ([]string, error) {
	rows, err := d.db.Query(ctx, `SELECT room_id FROM name_marks ORDER BY marked_at`)
	if err != nil {
		return nil, fmt.Errorf("list name marks: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var room string
		if err := rows.Scan(&room); err != nil {
			return nil, fmt.Errorf("list name marks: %w", err)
		}
		out = append(out, room)
	}
	return out, rows.Err()
}

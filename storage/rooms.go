package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// SetInviter records who invited the bot into a room (the latest invite counts).
func (d *DB) SetInviter(ctx context.Context, roomID, inviter string) error {
	_, err := d.db.Exec(ctx, `INSERT INTO rooms (room_id, inviter, invited_at) VALUES ($1, $2, $3)
		ON CONFLICT (room_id) DO UPDATE SET inviter = excluded.inviter, invited_at = excluded.invited_at`, roomID, inviter, d.nowMS())
	if err != nil {
		return fmt.Errorf("record the inviter of %s: %w", roomID, err)
	}
	return nil
}

// Inviter returns who invited the bot into a room ("" when unknown: a room joined before
// inviters were recorded).
func (d *DB) Inviter(ctx context.Context, roomID string) (string, error) {
	var who string
	err := d.db.QueryRow(ctx, `SELECT inviter FROM rooms WHERE room_id = $1`, roomID).Scan(&who)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the inviter of %s: %w", roomID, err)
	}
	return who, nil
}

// KeptBytesByRoom sums, per room, the bytes of the finished recordings' files that are
// still on the local disk (not deleted, not removed after their upload).
func (d *DB) KeptBytesByRoom(ctx context.Context, roomIDs []string) (map[string]int64, error) {
	out := map[string]int64{}
	if len(roomIDs) == 0 {
		return out, nil
	}
	in, args := inList(1, roomIDs)
	n := len(args)
	notRec, a := inList(n+1, []RecordingStatus{RecordingStarted, RecordingActive, RecordingStopping, RecordingExpired, RecordingDeleted})
	args = append(args, a...)
	notPart, a := inList(n+6, []PartStatus{PartExpired, PartDeleted, PartFailedWrite})
	args = append(args, a...)
	args = append(args, false)
	// SUM of a BIGINT is a NUMERIC in PostgreSQL: cast back.
	rows, err := d.db.Query(ctx, `SELECT r.room_id, CAST(COALESCE(SUM(p.bytes), 0) AS BIGINT) FROM recordings r JOIN parts p ON p.recording = r.id
		WHERE r.room_id IN (`+in+`) AND r.status NOT IN (`+notRec+`)
		AND p.local_deleted = $`+strconv.Itoa(n+9)+` AND p.status NOT IN (`+notPart+`)
		GROUP BY r.room_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("sum the kept bytes per room: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var room string
		var n int64
		if err := rows.Scan(&room, &n); err != nil {
			return nil, err
		}
		out[room] = n
	}
	return out, rows.Err()
}

package storage

import (
	"context"
	"fmt"
)

// CallStatus is the state of a row of the calls table: a call the bot recorded.
type CallStatus string

// The statuses of calls.
const (
	// CallActive: a recording of the call is running.
	CallActive CallStatus = "active"
	// CallEnded: every recording of the call is over.
	CallEnded CallStatus = "ended"
	// CallInterrupted: the process died while the call was recorded.
	CallInterrupted CallStatus = "interrupted"
	// CallPaused: a clean stop of the bot paused its recording, to be resumed.
	CallPaused CallStatus = "paused"
)

// upsertCall records a call (or finds it again, active once more) and returns its row id.
func (d *DB) upsertCall(ctx context.Context, roomID, callID, kind string, startedAtMS int64) (int64, error) {
	var row int64
	err := d.db.QueryRow(ctx, `INSERT INTO calls (room_id, call_id, kind, status, started_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (room_id, call_id, kind) DO UPDATE SET status = excluded.status, ended_at = NULL
		RETURNING id`, roomID, callID, kind, CallActive, startedAtMS).Scan(&row)
	if err != nil {
		return 0, fmt.Errorf("create call row: %w", err)
	}
	return row, nil
}

// endCall marks the call of a recording that is no longer live as over (interrupted or
// paused when the recording was), once no other recording of it is live.
func (d *DB) endCall(ctx context.Context, r *Recording) error {
	status := CallEnded
	switch r.Status {
	case RecordingInterrupted:
		status = CallInterrupted
	case RecordingPaused:
		status = CallPaused
	}
	live, args := inList(4, liveRecordingStatuses)
	_, err := d.db.Exec(ctx, `UPDATE calls SET status = $1, ended_at = COALESCE(ended_at, $2)
		WHERE id = (SELECT call FROM recordings WHERE id = $3) AND NOT EXISTS
		(SELECT 1 FROM recordings WHERE call = calls.id AND status IN (`+live+`))`,
		append([]any{status, ms(r.EndedAt), r.ID}, args...)...)
	if err != nil {
		return fmt.Errorf("update call of recording %s: %w", r.ID, err)
	}
	return nil
}

// interruptCalls marks every active call interrupted (start-up after a crash).
func (d *DB) interruptCalls(ctx context.Context) error {
	if _, err := d.db.Exec(ctx, `UPDATE calls SET status = $1 WHERE status = $2`, CallInterrupted, CallActive); err != nil {
		return fmt.Errorf("mark calls interrupted: %w", err)
	}
	return nil
}

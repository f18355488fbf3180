package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// RecordingStatus is the state of a row of the recordings table: one call folder, from
// its start to the summary in the room and, later, its deletion.
type RecordingStatus string

// The statuses of recordings. A recording goes started → active → stopping → saved →
// (uploaded →) notified; interrupted when the process died while it was live; paused when
// a clean stop of the bot paused it (the next start resumes it: started again, or saved
// when its call ended meanwhile); expired or deleted when its files are gone.
const (
	// RecordingStarted: the row exists; no file yet.
	RecordingStarted RecordingStatus = "started"
	// RecordingActive: files are being written.
	RecordingActive RecordingStatus = "active"
	// RecordingStopping: the files are being finalised.
	RecordingStopping RecordingStatus = "stopping"
	// RecordingSaved: every file is final on the local disk.
	RecordingSaved RecordingStatus = "saved"
	// RecordingUploaded: every file (and the manifest) is confirmed in object storage.
	RecordingUploaded RecordingStatus = "uploaded"
	// RecordingNotified: the room has the summary with the links.
	RecordingNotified RecordingStatus = "notified"
	// RecordingInterrupted: the process died while it was live; its files were repaired.
	RecordingInterrupted RecordingStatus = "interrupted"
	// RecordingPaused: a clean stop of the bot paused it: its files are final, its folder
	// resumable, no summary was posted; the next start continues it in the same folder.
	RecordingPaused RecordingStatus = "paused"
	// RecordingFailedNotify: the summary could not be posted; it is retried.
	RecordingFailedNotify RecordingStatus = "failed_notify"
	// RecordingExpired: deleted by retention (recordings.expire_after).
	RecordingExpired RecordingStatus = "expired"
	// RecordingDeleted: deleted by someone (!delete).
	RecordingDeleted RecordingStatus = "deleted"
)

// liveRecordingStatuses are the statuses of a recording still being written.
var liveRecordingStatuses = []RecordingStatus{RecordingStarted, RecordingActive, RecordingStopping}

// Live reports whether the recording is still being written.
func (s RecordingStatus) Live() bool {
	return s == RecordingStarted || s == RecordingActive || s == RecordingStopping
}

// Gone reports whether the recording's files are deleted.
func (s RecordingStatus) Gone() bool { return s == RecordingExpired || s == RecordingDeleted }

// Recording is one call folder.
type Recording struct {
	// ID is short and typed by users (!delete ID).
	ID     string
	RoomID string
	CallID string
	Kind   string
	// Folder is the call folder's name in the recordings dir.
	Folder       string
	Status       RecordingStatus
	StartedAt    time.Time
	EndedAt      time.Time
	DurationMs   int64
	Bytes        int64
	Participants int
	// StartEvent is the start notice (edited with progress); SummaryEvent the summary.
	StartEvent    string
	SummaryEvent  string
	StopReason    string
	Interruptions int
	ExpiresAt     time.Time
	// ExpiryNoticedAt is when the room was told the recording will be deleted.
	ExpiryNoticedAt time.Time
	DeletedAt       time.Time
	UpdatedAt       time.Time
}

const recordingCols = `r.id, c.call_id, r.room_id, r.folder, r.kind, r.status, r.started_at, r.ended_at, r.duration_ms, r.bytes,
	r.participants, r.start_event, r.summary_event, r.stop_reason, r.interruptions, r.expires_at, r.expiry_noticed_at,
	r.deleted_at, r.updated_at`

func scanRecording(row interface{ Scan(...any) error }) (*Recording, error) {
	var r Recording
	var started, updated int64
	var ended, expires, noticed, deleted sql.NullInt64
	err := row.Scan(&r.ID, &r.CallID, &r.RoomID, &r.Folder, &r.Kind, &r.Status, &started, &ended, &r.DurationMs, &r.Bytes,
		&r.Participants, &r.StartEvent, &r.SummaryEvent, &r.StopReason, &r.Interruptions, &expires, &noticed, &deleted, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	r.StartedAt = time.UnixMilli(started).UTC()
	r.UpdatedAt = time.UnixMilli(updated).UTC()
	r.EndedAt, r.ExpiresAt, r.ExpiryNoticedAt, r.DeletedAt = fromMS(ended), fromMS(expires), fromMS(noticed), fromMS(deleted)
	return &r, nil
}

// CreateRecording inserts a recording (and its call, if new) with status started and a
// fresh id, which it sets in r. A folder that already has a row keeps it: the row is
// returned as it is (a resumed recording).
func (d *DB) CreateRecording(ctx context.Context, r *Recording) error {
	if existing, err := d.RecordingByFolder(ctx, r.Folder); err == nil {
		*r = *existing
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	now := d.nowMS()
	if r.StartedAt.IsZero() {
		r.StartedAt = d.now()
	}
	if r.Status == "" {
		r.Status = RecordingStarted
	}
	err := d.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		callRow, err := d.upsertCall(ctx, r.RoomID, r.CallID, r.Kind, r.StartedAt.UnixMilli())
		if err != nil {
			return err
		}
		// A random id may be taken: try another (ON CONFLICT keeps a PostgreSQL
		// transaction usable, where a failed INSERT would abort it).
		for attempt := 0; ; attempt++ {
			r.ID = newID()
			res, err := d.db.Exec(ctx, `INSERT INTO recordings (id, call, room_id, folder, kind, status, started_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`,
				r.ID, callRow, r.RoomID, r.Folder, r.Kind, r.Status, r.StartedAt.UnixMilli(), now)
			if err != nil {
				return fmt.Errorf("create recording row: %w", err)
			}
			if n, err := res.RowsAffected(); err == nil && n == 1 {
				return nil
			}
			if attempt > 5 {
				return errors.New("create recording row: no free id after 6 tries")
			}
		}
	})
	if err != nil {
		return fmt.Errorf("create recording: %w", err)
	}
	r.UpdatedAt = time.UnixMilli(now).UTC()
	return nil
}

// UpdateRecording writes every mutable column of r.
func (d *DB) UpdateRecording(ctx context.Context, r *Recording) error {
	now := d.nowMS()
	res, err := d.db.Exec(ctx, `UPDATE recordings SET status = $1, ended_at = $2, duration_ms = $3, bytes = $4, participants = $5,
		start_event = $6, summary_event = $7, stop_reason = $8, interruptions = $9, expires_at = $10, expiry_noticed_at = $11,
		deleted_at = $12, updated_at = $13 WHERE id = $14`,
		r.Status, ms(r.EndedAt), r.DurationMs, r.Bytes, r.Participants, r.StartEvent, r.SummaryEvent, r.StopReason,
		r.Interruptions, ms(r.ExpiresAt), ms(r.ExpiryNoticedAt), ms(r.DeletedAt), now, r.ID)
	if err != nil {
		return fmt.Errorf("update recording %s: %w", r.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("update recording %s: %w", r.ID, ErrNotFound)
	}
	r.UpdatedAt = time.UnixMilli(now).UTC()
	if !r.Status.Live() {
		return d.endCall(ctx, r)
	}
	return nil
}

// ModifyRecording reads a recording, lets fn change it and writes it back.
func (d *DB) ModifyRecording(ctx context.Context, id string, fn func(r *Recording)) (*Recording, error) {
	r, err := d.Recording(ctx, id)
	if err != nil {
		return nil, err
	}
	fn(r)
	if err := d.UpdateRecording(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Recording returns the recording with this id.
func (d *DB) Recording(ctx context.Context, id string) (*Recording, error) {
	r, err := scanRecording(d.db.QueryRow(ctx, `SELECT `+recordingCols+` FROM recordings r JOIN calls c ON c.id = r.call WHERE r.id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("recording %q: %w", id, err)
	}
	return r, nil
}

// RecordingByFolder returns the recording of a call folder (its name).
func (d *DB) RecordingByFolder(ctx context.Context, folder string) (*Recording, error) {
	r, err := scanRecording(d.db.QueryRow(ctx, `SELECT `+recordingCols+` FROM recordings r JOIN calls c ON c.id = r.call WHERE r.folder = $1`, folder))
	if err != nil {
		return nil, fmt.Errorf("recording in %q: %w", folder, err)
	}
	return r, nil
}

func (d *DB) queryRecordings(ctx context.Context, where string, args ...any) ([]*Recording, error) {
	rows, err := d.db.Query(ctx, `SELECT `+recordingCols+` FROM recordings r JOIN calls c ON c.id = r.call WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list recordings: %w", err)
	}
	defer rows.Close()
	var out []*Recording
	for rows.Next() {
		r, err := scanRecording(rows)
		if err != nil {
			return nil, fmt.Errorf("list recordings: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RecordingsInRoom lists a room's recordings, newest first, at most limit.
func (d *DB) RecordingsInRoom(ctx context.Context, roomID string, limit int) ([]*Recording, error) {
	return d.queryRecordings(ctx, `r.room_id = $1 ORDER BY r.started_at DESC LIMIT $2`, roomID, limit)
}

// RecordingsWithStatus lists recordings in any of the statuses, oldest first.
func (d *DB) RecordingsWithStatus(ctx context.Context, statuses ...RecordingStatus) ([]*Recording, error) {
	in, args := inList(1, statuses)
	return d.queryRecordings(ctx, `r.status IN (`+in+`) ORDER BY r.started_at`, args...)
}

// RemovedSince lists the recordings whose files were deleted (expired, or deleted on
// request) at or after since (by the deleting instance's clock), oldest deletion first.
func (d *DB) RemovedSince(ctx context.Context, since time.Time) ([]*Recording, error) {
	return d.queryRecordings(ctx, `r.status IN ($1, $2) AND r.deleted_at >= $3 ORDER BY r.deleted_at`,
		RecordingExpired, RecordingDeleted, since.UnixMilli())
}

// removedAmongBatch bounds the folders RemovedAmong asks about in one statement.
const removedAmongBatch = 500

// RemovedAmong lists the recordings in folders (call folders' names) whose files were
// deleted (expired, or deleted on request).
func (d *DB) RemovedAmong(ctx context.Context, folders []string) ([]*Recording, error) {
	var out []*Recording
	for batch := range slices.Chunk(folders, removedAmongBatch) {
		in, args := inList(3, batch)
		recs, err := d.queryRecordings(ctx, `r.status IN ($1, $2) AND r.folder IN (`+in+`)`,
			append([]any{RecordingExpired, RecordingDeleted}, args...)...)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

// ExpiringBefore lists recordings not yet deleted whose expiry is before t, oldest first.
func (d *DB) ExpiringBefore(ctx context.Context, t time.Time) ([]*Recording, error) {
	return d.queryRecordings(ctx, `r.expires_at IS NOT NULL AND r.expires_at <= $1 AND r.status NOT IN ($2, $3)
		ORDER BY r.expires_at`, t.UnixMilli(), RecordingExpired, RecordingDeleted)
}

// MarkInterrupted is run at start-up: every recording, part and call that was live when
// the process died becomes interrupted. It returns the recordings it changed.
func (d *DB) MarkInterrupted(ctx context.Context) ([]*Recording, error) {
	return d.MarkInterruptedWhere(ctx, nil)
}

// MarkInterruptedWhere is MarkInterrupted for the live recordings mine reports as this
// instance's (on a database several instances share, the others' recordings go on);
// the calls table is left alone then. A nil mine is every recording.
func (d *DB) MarkInterruptedWhere(ctx context.Context, mine func(*Recording) bool) ([]*Recording, error) {
	all, err := d.RecordingsWithStatus(ctx, liveRecordingStatuses...)
	if err != nil {
		return nil, err
	}
	live := all[:0]
	for _, r := range all {
		if mine == nil || mine(r) {
			live = append(live, r)
		}
	}
	for _, r := range live {
		r.Status = RecordingInterrupted
		r.Interruptions++
		if err := d.UpdateRecording(ctx, r); err != nil {
			return nil, err
		}
		if err := d.SetPartsStatus(ctx, r.ID, PartInterrupted, PartStarted, PartActive); err != nil {
			return nil, err
		}
	}
	if mine == nil {
		if err := d.interruptCalls(ctx); err != nil {
			return nil, err
		}
	}
	return live, nil
}

// Removal is why a recording's files were deleted. Each table records it in a status of
// its own.
type Removal int

// Removals.
const (
	// RemovedByExpiry: retention (recordings.expire_after) deleted the files.
	RemovedByExpiry Removal = iota + 1
	// RemovedByRequest: someone deleted the recording (!delete).
	RemovedByRequest
)

// MarkRemoved records that a recording's files are gone, in its row and in the rows of
// its parts and uploads (the rows stay: !recordings still shows what was), at at.
func (d *DB) MarkRemoved(ctx context.Context, recordingID string, why Removal, at time.Time) (*Recording, error) {
	rs, ps, us := RecordingExpired, PartExpired, UploadExpired
	if why == RemovedByRequest {
		rs, ps, us = RecordingDeleted, PartDeleted, UploadDeleted
	}
	if err := d.SetPartsStatus(ctx, recordingID, ps); err != nil {
		return nil, err
	}
	if err := d.SetUploadsStatus(ctx, recordingID, us); err != nil {
		return nil, err
	}
	return d.ModifyRecording(ctx, recordingID, func(r *Recording) {
		r.Status = rs
		r.DeletedAt = at
	})
}

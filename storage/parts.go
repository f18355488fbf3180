package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PartStatus is the state of a row of the parts table: one file of a recording.
type PartStatus string

// The statuses of parts.
const (
	// PartStarted: the file is registered; it may not exist yet.
	PartStarted PartStatus = "started"
	// PartActive: being written. (Rows written before parts were started explicitly.)
	PartActive PartStatus = "active"
	// PartSaved: final.
	PartSaved PartStatus = "saved"
	// PartInterrupted: the process died while it was written (repaired), or finalising it
	// failed; it plays up to its last flush.
	PartInterrupted PartStatus = "interrupted"
	// PartFailedWrite: the file could not be created: there is nothing to keep.
	PartFailedWrite PartStatus = "failed_write"
	// PartExpired and PartDeleted: the file is gone with its recording.
	PartExpired PartStatus = "expired"
	PartDeleted PartStatus = "deleted"
)

// Gone reports whether the file is deleted.
func (s PartStatus) Gone() bool { return s == PartExpired || s == PartDeleted }

// Part is one file of a recording.
type Part struct {
	ID          int64
	RecordingID string
	File        string
	Track       string
	Part        int
	UserID      string
	DeviceID    string
	DisplayName string
	Kind        string
	Codec       string
	Source      string
	Status      PartStatus
	StartedAt   time.Time
	EndedAt     time.Time
	StartMs     int64
	DurationMs  int64
	Bytes       int64
	SHA256      string
	EndReason   string
	// Token is the unguessable name of the file's download link.
	Token        string
	LocalDeleted bool
	UpdatedAt    time.Time
}

const partCols = `id, recording, file, track, part, user_id, device_id, display_name, kind, codec, source, status,
	started_at, ended_at, start_ms, duration_ms, bytes, sha256, end_reason, token, local_deleted, updated_at`

func scanPart(row interface{ Scan(...any) error }) (*Part, error) {
	var p Part
	var started, updated int64
	var ended sql.NullInt64
	err := row.Scan(&p.ID, &p.RecordingID, &p.File, &p.Track, &p.Part, &p.UserID, &p.DeviceID, &p.DisplayName, &p.Kind,
		&p.Codec, &p.Source, &p.Status, &started, &ended, &p.StartMs, &p.DurationMs, &p.Bytes, &p.SHA256, &p.EndReason,
		&p.Token, &p.LocalDeleted, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	p.StartedAt = time.UnixMilli(started).UTC()
	p.UpdatedAt = time.UnixMilli(updated).UTC()
	p.EndedAt = fromMS(ended)
	return &p, nil
}

// SavePart inserts or updates a part, keyed by recording and file. A new part gets a
// download token; an existing one keeps its id and token (set in p).
func (d *DB) SavePart(ctx context.Context, p *Part) error {
	if p.Token == "" {
		p.Token = NewToken()
	}
	if p.StartedAt.IsZero() {
		p.StartedAt = d.now()
	}
	now := d.nowMS()
	err := d.db.QueryRow(ctx, `INSERT INTO parts (recording, file, track, part, user_id, device_id, display_name, kind, codec,
			source, status, started_at, ended_at, start_ms, duration_ms, bytes, sha256, end_reason, token, local_deleted, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
		ON CONFLICT (recording, file) DO UPDATE SET display_name = excluded.display_name, status = excluded.status,
			ended_at = excluded.ended_at, start_ms = excluded.start_ms, duration_ms = excluded.duration_ms, bytes = excluded.bytes,
			sha256 = excluded.sha256, end_reason = excluded.end_reason, local_deleted = excluded.local_deleted,
			updated_at = excluded.updated_at
		RETURNING id, token`,
		p.RecordingID, p.File, p.Track, p.Part, p.UserID, p.DeviceID, p.DisplayName, p.Kind, p.Codec, p.Source, p.Status,
		p.StartedAt.UnixMilli(), ms(p.EndedAt), p.StartMs, p.DurationMs, p.Bytes, p.SHA256, p.EndReason, p.Token, p.LocalDeleted, now,
	).Scan(&p.ID, &p.Token)
	if err != nil {
		return fmt.Errorf("save part %s of %s: %w", p.File, p.RecordingID, err)
	}
	p.UpdatedAt = time.UnixMilli(now).UTC()
	return nil
}

// Parts lists a recording's parts in file order.
func (d *DB) Parts(ctx context.Context, recordingID string) ([]*Part, error) {
	rows, err := d.db.Query(ctx, `SELECT `+partCols+` FROM parts WHERE recording = $1 ORDER BY track, part`, recordingID)
	if err != nil {
		return nil, fmt.Errorf("list parts of %s: %w", recordingID, err)
	}
	defer rows.Close()
	var out []*Part
	for rows.Next() {
		p, err := scanPart(rows)
		if err != nil {
			return nil, fmt.Errorf("list parts of %s: %w", recordingID, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// PartByToken finds the part a download token names.
func (d *DB) PartByToken(ctx context.Context, token string) (*Part, error) {
	p, err := scanPart(d.db.QueryRow(ctx, `SELECT `+partCols+` FROM parts WHERE token = $1`, token))
	if err != nil {
		return nil, fmt.Errorf("part by token: %w", err)
	}
	return p, nil
}

// SetPartsStatus sets the status of every part of a recording that is in one of from
// (all parts when from is empty).
func (d *DB) SetPartsStatus(ctx context.Context, recordingID string, to PartStatus, from ...PartStatus) error {
	q := `UPDATE parts SET status = $1, updated_at = $2 WHERE recording = $3`
	args := []any{to, d.nowMS(), recordingID}
	if len(from) > 0 {
		in, a := inList(4, from)
		q += ` AND status IN (` + in + `)`
		args = append(args, a...)
	}
	if _, err := d.db.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("set parts of %s %s: %w", recordingID, to, err)
	}
	return nil
}

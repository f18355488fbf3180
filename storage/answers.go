package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Answer is a recording of a direct call the bot answered: who called and the call's
// intent ("audio", "video" or ""). A resumed recording stays a direct call's.
type Answer struct {
	RecordingID string
	Caller      string
	Intent      string
}

// SetAnswer records that a recording is of a direct call the bot answered.
func (d *DB) SetAnswer(ctx context.Context, a Answer) error {
	_, err := d.db.Exec(ctx, `INSERT INTO answers (recording, caller, intent) VALUES ($1, $2, $3)
		ON CONFLICT (recording) DO UPDATE SET caller = excluded.caller, intent = excluded.intent`, a.RecordingID, a.Caller, a.Intent)
	if err != nil {
		return fmt.Errorf("record the answered call of recording %s: %w", a.RecordingID, err)
	}
	return nil
}

// AnswerOf returns the answered call of a recording (ErrNotFound for a recording the bot
// did not answer).
func (d *DB) AnswerOf(ctx context.Context, recordingID string) (*Answer, error) {
	a := Answer{RecordingID: recordingID}
	err := d.db.QueryRow(ctx, `SELECT caller, intent FROM answers WHERE recording = $1`, recordingID).Scan(&a.Caller, &a.Intent)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read the answered call of recording %s: %w", recordingID, err)
	}
	return &a, nil
}

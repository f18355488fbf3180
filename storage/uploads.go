package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// UploadStatus is the state of a row of the uploads table: the copy of one file in object
// storage.
type UploadStatus string

// The statuses of uploads: pending → uploading → uploaded → confirmed, or failed_upload
// when retrying cannot help; expired or deleted with their recording.
const (
	// UploadPending: waiting for data (or started over).
	UploadPending UploadStatus = "pending"
	// UploadUploading: a multipart upload is open and parts are being sent.
	UploadUploading UploadStatus = "uploading"
	// UploadUploaded: completed, not checked yet.
	UploadUploaded UploadStatus = "uploaded"
	// UploadConfirmed: completed and checked (read back, or the store's notification).
	UploadConfirmed UploadStatus = "confirmed"
	// UploadFailed: cannot be done (the local file is gone, too large for the part size).
	UploadFailed UploadStatus = "failed_upload"
	// UploadExpired and UploadDeleted: the copy is gone with its recording.
	UploadExpired UploadStatus = "expired"
	UploadDeleted UploadStatus = "deleted"
)

// Gone reports whether the copy is deleted.
func (s UploadStatus) Gone() bool { return s == UploadExpired || s == UploadDeleted }

// Upload is the copy of one file of a recording in object storage.
type Upload struct {
	ID          int64
	RecordingID string
	File        string
	Bucket      string
	Key         string
	// UploadID is the open multipart upload ("" when none is open).
	UploadID    string
	Status      UploadStatus
	Bytes       int64
	SHA256      string
	ETag        string
	Attempts    int
	LastError   string
	ConfirmedBy string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	ConfirmedAt time.Time
}

// Chunk is one part of a multipart upload already sent.
type Chunk struct {
	Number int
	Offset int64
	Size   int64
	// MD5 is the hex MD5 of the bytes sent.
	MD5  string
	ETag string
}

const uploadCols = `id, recording, file, bucket, object_key, upload_id, status, bytes, sha256, etag, attempts, last_error,
	confirmed_by, created_at, updated_at, confirmed_at`

func scanUpload(row interface{ Scan(...any) error }) (*Upload, error) {
	var u Upload
	var created, updated int64
	var confirmed sql.NullInt64
	err := row.Scan(&u.ID, &u.RecordingID, &u.File, &u.Bucket, &u.Key, &u.UploadID, &u.Status, &u.Bytes, &u.SHA256, &u.ETag,
		&u.Attempts, &u.LastError, &u.ConfirmedBy, &created, &updated, &confirmed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	u.CreatedAt, u.UpdatedAt, u.ConfirmedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC(), fromMS(confirmed)
	return &u, nil
}

// EnsureUpload returns the upload of a file, creating it (pending) if there is none and
// its recording is not gone (expired or deleted): then ErrUploadGone.
func (d *DB) EnsureUpload(ctx context.Context, recordingID, file, bucket, key string) (*Upload, error) {
	now := d.nowMS()
	_, err := d.db.Exec(ctx, `INSERT INTO uploads (recording, file, bucket, object_key, status, created_at, updated_at)
		SELECT $1, $2, $3, $4, $5, $6, $7
		WHERE NOT EXISTS (SELECT 1 FROM recordings WHERE id = $1 AND status IN ($8, $9))
		ON CONFLICT (recording, file) DO NOTHING`, recordingID, file, bucket, key, UploadPending, now, now, RecordingExpired, RecordingDeleted)
	if err != nil {
		return nil, fmt.Errorf("create upload of %s: %w", file, err)
	}
	u, err := d.UploadOf(ctx, recordingID, file)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("create upload of %s: %w", file, ErrUploadGone)
	}
	return u, err
}

// UploadOf returns the upload of a file.
func (d *DB) UploadOf(ctx context.Context, recordingID, file string) (*Upload, error) {
	u, err := scanUpload(d.db.QueryRow(ctx, `SELECT `+uploadCols+` FROM uploads WHERE recording = $1 AND file = $2`, recordingID, file))
	if err != nil {
		return nil, fmt.Errorf("upload of %s/%s: %w", recordingID, file, err)
	}
	return u, nil
}

// UploadByKey finds the upload of an object.
func (d *DB) UploadByKey(ctx context.Context, bucket, key string) (*Upload, error) {
	u, err := scanUpload(d.db.QueryRow(ctx, `SELECT `+uploadCols+` FROM uploads WHERE bucket = $1 AND object_key = $2`, bucket, key))
	if err != nil {
		return nil, fmt.Errorf("upload of %s/%s: %w", bucket, key, err)
	}
	return u, nil
}

// Uploads lists a recording's uploads.
func (d *DB) Uploads(ctx context.Context, recordingID string) ([]*Upload, error) {
	return d.queryUploads(ctx, `recording = $1 ORDER BY file`, recordingID)
}

// UploadsWithStatus lists uploads in any of the statuses.
func (d *DB) UploadsWithStatus(ctx context.Context, statuses ...UploadStatus) ([]*Upload, error) {
	in, args := inList(1, statuses)
	return d.queryUploads(ctx, `status IN (`+in+`) ORDER BY id`, args...)
}

func (d *DB) queryUploads(ctx context.Context, where string, args ...any) ([]*Upload, error) {
	rows, err := d.db.Query(ctx, `SELECT `+uploadCols+` FROM uploads WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list uploads: %w", err)
	}
	defer rows.Close()
	var out []*Upload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, fmt.Errorf("list uploads: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// ErrUploadGone: the upload's row is expired or deleted with its recording (possibly by
// another instance of a fleet); it is not written any more.
var ErrUploadGone = errors.New("the upload is deleted with its recording")

// UpdateUpload writes every mutable column of u, unless its row is gone with its
// recording (expired or deleted): then ErrUploadGone, and the row stays as it is, so an
// upload that ran on while its recording was deleted cannot bring the row back.
func (d *DB) UpdateUpload(ctx context.Context, u *Upload) error {
	now := d.nowMS()
	res, err := d.db.Exec(ctx, `UPDATE uploads SET upload_id = $1, status = $2, bytes = $3, sha256 = $4, etag = $5, attempts = $6,
		last_error = $7, confirmed_by = $8, confirmed_at = $9, updated_at = $10 WHERE id = $11 AND status NOT IN ($12, $13)`,
		u.UploadID, u.Status, u.Bytes, u.SHA256, u.ETag, u.Attempts, u.LastError, u.ConfirmedBy, ms(u.ConfirmedAt), now, u.ID,
		UploadExpired, UploadDeleted)
	if err != nil {
		return fmt.Errorf("update upload of %s: %w", u.File, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update upload of %s: %w", u.File, err)
	} else if n == 0 {
		return fmt.Errorf("update upload of %s: %w", u.File, ErrUploadGone)
	}
	u.UpdatedAt = time.UnixMilli(now).UTC()
	return nil
}

// Chunks lists the parts sent in an upload's open multipart upload, by number.
func (d *DB) Chunks(ctx context.Context, uploadID int64) ([]Chunk, error) {
	rows, err := d.db.Query(ctx, `SELECT number, "offset", size, md5, etag FROM upload_chunks WHERE upload = $1 ORDER BY number`, uploadID)
	if err != nil {
		return nil, fmt.Errorf("list chunks: %w", err)
	}
	defer rows.Close()
	var out []Chunk
	for rows.Next() {
		var c Chunk
		if err := rows.Scan(&c.Number, &c.Offset, &c.Size, &c.MD5, &c.ETag); err != nil {
			return nil, fmt.Errorf("list chunks: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// PutChunk records (or replaces) a sent part.
func (d *DB) PutChunk(ctx context.Context, uploadID int64, c Chunk) error {
	_, err := d.db.Exec(ctx, `INSERT INTO upload_chunks (upload, number, "offset", size, md5, etag) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (upload, number) DO UPDATE SET "offset" = excluded."offset", size = excluded.size, md5 = excluded.md5, etag = excluded.etag`,
		uploadID, c.Number, c.Offset, c.Size, c.MD5, c.ETag)
	if err != nil {
		return fmt.Errorf("record chunk %d: %w", c.Number, err)
	}
	return nil
}

// DeleteChunks forgets an upload's sent parts (its multipart upload was completed or lost).
func (d *DB) DeleteChunks(ctx context.Context, uploadID int64) error {
	if _, err := d.db.Exec(ctx, `DELETE FROM upload_chunks WHERE upload = $1`, uploadID); err != nil {
		return fmt.Errorf("delete chunks: %w", err)
	}
	return nil
}

// SetUploadsStatus sets the status of every upload of a recording.
func (d *DB) SetUploadsStatus(ctx context.Context, recordingID string, to UploadStatus) error {
	if _, err := d.db.Exec(ctx, `UPDATE uploads SET status = $1, updated_at = $2 WHERE recording = $3`, to, d.nowMS(), recordingID); err != nil {
		return fmt.Errorf("set uploads of %s %s: %w", recordingID, to, err)
	}
	return nil
}

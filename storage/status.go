package storage

// Status is the state of a row. Which values a table uses is listed with each table's type.
type Status string

// Statuses.
const (
	// StatusStarted: the row exists; nothing written yet.
	StatusStarted Status = "started"
	// StatusActive: recording (a recording), being written (a part), running (a call).
	StatusActive Status = "active"
	// StatusStopping: a recording that is finalising its files.
	StatusStopping Status = "stopping"
	// StatusSaved: the files are final on local disk.
	StatusSaved Status = "saved"
	// StatusUploaded: every file is confirmed in object storage.
	StatusUploaded Status = "uploaded"
	// StatusNotified: the room has the summary with the links.
	StatusNotified Status = "notified"
	// StatusInterrupted: the process died while this was active; files were repaired.
	StatusInterrupted Status = "interrupted"
	// StatusExpired: deleted by retention (recordings.expire_after).
	StatusExpired Status = "expired"
	// StatusDeleted: deleted by someone (!delete).
	StatusDeleted Status = "deleted"
	// StatusEnded: a call that is over.
	StatusEnded Status = "ended"

	// Upload states.
	StatusPending   Status = "pending"   // waiting for data
	StatusUploading Status = "uploading" // multipart upload open, parts being sent
	StatusConfirmed Status = "confirmed" // completed and checked (HEAD or webhook)

	// Failures.
	StatusFailedStart  Status = "failed_start"
	StatusFailedWrite  Status = "failed_write"
	StatusFailedUpload Status = "failed_upload"
	StatusFailedNotify Status = "failed_notify"
)

// Live reports whether a recording or part with this status is still being written.
func (s Status) Live() bool {
	return s == StatusStarted || s == StatusActive || s == StatusStopping
}

// Gone reports whether the files are deleted.
func (s Status) Gone() bool { return s == StatusExpired || s == StatusDeleted }

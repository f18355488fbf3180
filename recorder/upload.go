package recorder

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// Upload says where a file was copied to and how the copy was checked.
type Upload struct {
	// URL names the copy, e.g. s3://bucket/prefix/folder/file.ogg.
	URL    string `json:"url"`
	Bucket string `json:"bucket,omitempty"`
	Key    string `json:"key,omitempty"`
	Bytes  int64  `json:"bytes"`
	// SHA256 is the checksum of the uploaded bytes: the file's own.
	SHA256 string `json:"sha256"`
	ETag   string `json:"etag,omitempty"`
	// Confirmed says how the copy was checked against the file: "head" (size and ETag
	// read back from the store) or "webhook" (the store's own notification).
	Confirmed  string    `json:"confirmed"`
	UploadedAt time.Time `json:"uploaded_at"`
	// LocalDeleted is set when the local file was removed after the upload.
	LocalDeleted bool `json:"local_deleted,omitempty"`
}

// ErrNoSuchFile is returned when a manifest has no entry for a file.
var ErrNoSuchFile = errors.New("no such file in the manifest")

// SetUpload records where a file of a running (or just closed) session went.
func (s *Session) SetUpload(file string, u Upload) error {
	return s.UpdateFile(file, func(e *FileEntry) { e.Upload = &u })
}

// SetUpload records where a file of a finished call folder went, rewriting the manifest
// atomically. The caller must make sure no Session has the folder open.
func SetUpload(folder, file string, u Upload) error {
	return UpdateFileIn(folder, file, func(e *FileEntry) { e.Upload = &u })
}

// UpdateFile changes a file's entry in a running (or just closed) session's manifest: a
// file another instance wrote, whose copy was completed after this one took the
// recording over. fn must not change the entry's File, Track or Part.
func (s *Session) UpdateFile(file string, fn func(*FileEntry)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.manifest.Tracks {
		if s.manifest.Tracks[i].File == file {
			fn(&s.manifest.Tracks[i])
			s.dirty, s.durable = true, true
			return s.writeLocked()
		}
	}
	return fmt.Errorf("%s: %w", file, ErrNoSuchFile)
}

// UpdateFileIn changes a file's entry in the manifest of a call folder no Session has open,
// rewriting it atomically. fn must not change the entry's File, Track or Part.
func UpdateFileIn(folder, file string, fn func(*FileEntry)) error {
	m, err := ReadManifest(folder)
	if err != nil {
		return err
	}
	for i := range m.Tracks {
		if m.Tracks[i].File == file {
			fn(&m.Tracks[i])
			return writeJSONAtomic(filepath.Join(folder, ManifestFile), m)
		}
	}
	return fmt.Errorf("%s: %w", file, ErrNoSuchFile)
}

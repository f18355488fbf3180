// Package datadir is the recorder's private folder (data_dir): the state database, the
// crypto store and the keys live there, one recorder at a time. The folder is always 0700
// and its files 0600, whatever recordings.dir_mode and file_mode say (those are for
// serving the recordings).
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/matrix-recorder/matrix-recorder/storage/lockfile"
)

// Modes of data_dir and of the files in it.
const (
	DirMode  = 0o700
	FileMode = 0o600
	// LockFile in data_dir is held (flock) while a recorder runs on it.
	LockFile = "lock"
)

// Lock creates data_dir and takes its lock: a second recorder on the same data_dir would
// repair the first one's live recordings and fight over its device. A lock held by another
// process is a *lockfile.HeldError.
func Lock(dir string) (*lockfile.Lock, error) {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return nil, fmt.Errorf("create data_dir: %w", err)
	}
	return lockfile.Acquire(filepath.Join(dir, LockFile), FileMode)
}

// CreatePrivate creates path with FileMode unless it exists, so that a library that
// creates it with a wider mode (SQLite: 0644) opens a private file instead.
func CreatePrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return f.Close()
}

// WriteSecret writes data to path with FileMode, synced (file and directory), so that a
// secret is on disk before anything relies on it.
func WriteSecret(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, FileMode)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(FileMode) // an old temp file may have had another mode
	}
	if werr == nil {
		werr = f.Sync()
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return werr
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

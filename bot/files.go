package bot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/lockfile"
)

// data_dir holds keys and state nobody else needs: it is always 0700 and its files 0600,
// whatever recordings.dir_mode / file_mode say (those are for serving the recordings).
const (
	dataDirMode  = 0o700
	dataFileMode = 0o600
	// lockFileName in data_dir is held (flock) while the bot runs.
	lockFileName = "lock"
	// cryptoDBName is mautrix's crypto store in data_dir.
	cryptoDBName = "crypto.db"
)

// lockDataDir creates data_dir and takes its lock: a second recorder on the same data_dir
// would repair the first one's live recordings and fight over its device.
func lockDataDir(dir string) (*lockfile.Lock, error) {
	if err := os.MkdirAll(dir, dataDirMode); err != nil {
		return nil, fmt.Errorf("create data_dir: %w", err)
	}
	return lockfile.Acquire(filepath.Join(dir, lockFileName), dataFileMode)
}

// createPrivateFile creates path with dataFileMode unless it exists, so that a library that
// creates it with a wider mode (SQLite: 0644) opens a private file instead.
func createPrivateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, dataFileMode)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// writeSecretFile writes data to path with mode 0600, synced (file and directory), so
// that a secret is on disk before anything relies on it.
func writeSecretFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, dataFileMode)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(dataFileMode) // an old temp file may have had another mode
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

// checkModes warns about what already exists with wider permissions than the recorder
// creates: data_dir and its files, the recordings root and its call folders. It changes
// nothing (an operator may have widened them on purpose).
func checkModes(log zerolog.Logger, cfg config.Config) {
	wide := func(path string, want os.FileMode) (os.FileMode, bool) {
		fi, err := os.Stat(path)
		if err != nil {
			return 0, false
		}
		got := fi.Mode().Perm()
		return got, got&^want != 0
	}
	warn := func(path string, got, want os.FileMode, key string) {
		log.Warn().Str("path", path).Str("mode", fmt.Sprintf("%04o", got)).Str("want", fmt.Sprintf("%04o", want)).
			Msg("Wider permissions than the recorder gives (" + key + "); others on this machine may read it. chmod it if that is not meant")
	}
	if got, bad := wide(cfg.DataDir, dataDirMode); bad {
		warn(cfg.DataDir, got, dataDirMode, "data_dir is always 0700")
	}
	for _, name := range []string{storage.FileName, cryptoDBName, pickleKeyFile, recoveryKeyFile, linkKeyFile, lockFileName} {
		p := filepath.Join(cfg.DataDir, name)
		if got, bad := wide(p, dataFileMode); bad {
			warn(p, got, dataFileMode, "files in data_dir are always 0600")
		}
	}
	dirMode := cfg.Recordings.DirMode.Perm()
	if got, bad := wide(cfg.Recordings.Dir, dirMode); bad {
		warn(cfg.Recordings.Dir, got, dirMode, "recordings.dir_mode")
	}
	entries, err := os.ReadDir(cfg.Recordings.Dir)
	if err != nil {
		return
	}
	n, example := 0, ""
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(cfg.Recordings.Dir, e.Name())
		if _, bad := wide(p, dirMode); bad {
			if n == 0 {
				example = p
			}
			n++
		}
	}
	if n > 0 {
		log.Warn().Int("folders", n).Str("example", example).Str("want", fmt.Sprintf("%04o", dirMode)).
			Msg("Call folders with wider permissions than recordings.dir_mode; others on this machine may read them. chmod them if that is not meant")
	}
}

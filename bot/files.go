package bot

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/lifecycle"
	"github.com/matrix-recorder/matrix-recorder/storage/datadir"
)

// cryptoDBName is mautrix's crypto store in data_dir.
const cryptoDBName = "crypto.db"

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
	if got, bad := wide(cfg.DataDir, datadir.DirMode); bad {
		warn(cfg.DataDir, got, datadir.DirMode, "data_dir is always 0700")
	}
	for _, name := range append([]string{cryptoDBName, pickleKeyFile, recoveryKeyFile, datadir.LockFile}, lifecycle.StateFiles()...) {
		p := filepath.Join(cfg.DataDir, name)
		if got, bad := wide(p, datadir.FileMode); bad {
			warn(p, got, datadir.FileMode, "files in data_dir are always 0600")
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

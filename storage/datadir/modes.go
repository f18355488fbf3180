package datadir

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
)

// CheckModes warns about what already exists with wider permissions than the recorder
// creates: data_dir and its files (files: their names, besides the lock), the recordings
// root and its call folders (dirMode: recordings.dir_mode). It changes nothing (an
// operator may have widened them on purpose).
func CheckModes(log zerolog.Logger, dataDir string, files []string, recordingsDir string, dirMode os.FileMode) {
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
	if got, bad := wide(dataDir, DirMode); bad {
		warn(dataDir, got, DirMode, "data_dir is always 0700")
	}
	for _, name := range append([]string{LockFile}, files...) {
		p := filepath.Join(dataDir, name)
		if got, bad := wide(p, FileMode); bad {
			warn(p, got, FileMode, "files in data_dir are always 0600")
		}
	}
	if got, bad := wide(recordingsDir, dirMode); bad {
		warn(recordingsDir, got, dirMode, "recordings.dir_mode")
	}
	entries, err := os.ReadDir(recordingsDir)
	if err != nil {
		return
	}
	n, example := 0, ""
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(recordingsDir, e.Name())
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

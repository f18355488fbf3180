package recorder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
)

// RecoveryReport says what was done to one call folder left by a crash.
type RecoveryReport struct {
	Folder   string
	Manifest Manifest
	Repaired []string
	Failed   map[string]error
}

// RecoverInterrupted finds call folders whose manifest still says "recording" (the
// process died before finishing them), makes their files playable and seekable where
// possible, and marks them interrupted in the manifest. It is meant to run at start-up,
// before any new recording starts.
func RecoverInterrupted(dir string, log zerolog.Logger) ([]RecoveryReport, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("list recordings: %w", err)
	}
	var out []RecoveryReport
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		folder := filepath.Join(dir, e.Name())
		m, err := ReadManifest(folder)
		if err != nil || m.Status != StatusRecording {
			continue
		}
		rep := RecoverFolder(folder, m, log)
		out = append(out, rep)
	}
	return out, nil
}

// RecoverFolder repairs one interrupted call folder and rewrites its manifest.
func RecoverFolder(folder string, m *Manifest, log zerolog.Logger) RecoveryReport {
	rep := RecoveryReport{Folder: folder, Failed: map[string]error{}}
	log = log.With().Str("folder", filepath.Base(folder)).Logger()
	var last time.Time
	for i := range m.Tracks {
		t := &m.Tracks[i]
		path := filepath.Join(folder, filepath.Base(t.File))
		fi, err := os.Stat(path)
		if err != nil {
			if t.Status == StatusRecording {
				t.Status = StatusInterrupted
				t.EndReason = "interrupted before the file was written"
				if t.Writer != "" {
					t.EndReason = writerStopped(t)
				}
			}
			continue
		}
		if fi.ModTime().After(last) {
			last = fi.ModTime()
		}
		if t.Status != StatusRecording {
			continue
		}
		if t.Writer != "" {
			// Another program writes it and may still be writing: leave the bytes alone.
			t.Status = StatusInterrupted
			t.EndReason = writerStopped(t)
			continue
		}
		dur, err := repairFile(path)
		if err != nil {
			rep.Failed[t.File] = err
			log.Warn().Err(err).Str("file", t.File).Msg("Could not repair file")
		} else {
			rep.Repaired = append(rep.Repaired, t.File)
			t.DurationMs = dur.Milliseconds()
		}
		t.Status = StatusInterrupted
		t.EndReason = "the recorder stopped unexpectedly"
		ended := fi.ModTime().UTC()
		t.EndedAt = &ended
		if size, sum, err := fileDigest(path); err == nil {
			t.Bytes = size
			t.SHA256 = sum
		}
	}
	if last.IsZero() {
		last = m.StartedAt
	}
	ended := last.UTC()
	m.EndedAt = &ended
	m.DurationMs = ended.Sub(m.StartedAt).Milliseconds()
	m.Status = StatusInterrupted
	m.Interruption = "the recorder stopped unexpectedly (crash, kill or power loss); files were repaired and are playable up to the last flush"
	for i := range m.Participants {
		if m.Participants[i].LeftAt == nil {
			m.Participants[i].LeftAt = &ended
		}
	}
	if err := writeJSONAtomic(filepath.Join(folder, ManifestFile), m); err != nil {
		rep.Failed[ManifestFile] = err
	}
	rep.Manifest = *m
	log.Info().Int("repaired", len(rep.Repaired)).Int("failed", len(rep.Failed)).Msg("Recovered an interrupted recording")
	return rep
}

func repairFile(path string) (time.Duration, error) {
	c, ok := codec.ContainerOf(path)
	if !ok {
		return 0, fmt.Errorf("unknown file type %s", filepath.Ext(path))
	}
	return c.Repair(path)
}

// writerStopped is the end reason of a file another program was writing when the recorder
// stopped (it may have gone on writing).
func writerStopped(t *FileEntry) string {
	return "the recorder stopped while " + t.Writer + " wrote this file"
}

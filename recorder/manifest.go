package recorder

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ManifestFile is the name of the manifest in every call folder.
const ManifestFile = "manifest.json"

// ManifestVersion is the schema version written in every manifest.
const ManifestVersion = 1

// Call and file states in the manifest.
const (
	StatusRecording   = "recording"
	StatusFinished    = "finished"
	StatusInterrupted = "interrupted"
	StatusComplete    = "complete"
)

// Manifest describes one call folder: who each file is and where it sits on the call's
// timeline. It is written when the call starts and rewritten atomically as tracks come
// and go, so a crash always leaves a valid one.
type Manifest struct {
	Version   int        `json:"version"`
	CallID    string     `json:"call_id"`
	RoomID    string     `json:"room_id"`
	Kind      Kind       `json:"kind"`
	Status    string     `json:"status"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at"`
	// DurationMs is the length of the call's timeline so far.
	DurationMs   int64         `json:"duration_ms"`
	Recorder     string        `json:"recorder,omitempty"`
	Participants []Participant `json:"participants"`
	OptOuts      []OptOut      `json:"opt_outs,omitempty"`
	Markers      []Marker      `json:"markers,omitempty"`
	// Warnings say what went wrong that the files alone do not show (e.g. a participant
	// whose media could never be decrypted, so has no file).
	Warnings []string    `json:"warnings,omitempty"`
	Tracks   []FileEntry `json:"tracks"`
	// Interruption says what happened when the recording did not end cleanly.
	Interruption string `json:"interruption,omitempty"`
	// Resumes lists the interruptions after which the recording went on in this folder.
	Resumes []Resume `json:"resumes,omitempty"`
	// Exports lists what was made from the files after the call (package postcall).
	Exports []Export `json:"exports,omitempty"`
}

// Export is one file made from the recording after the call: a mixdown, aligned tracks,
// an archive, a label file, a transcript, the summary picture.
type Export struct {
	// File is relative to the call folder ("exports/mix.ogg").
	File string `json:"file"`
	// Kind is mix, track, zip, labels, cue, transcript or picture.
	Kind string `json:"kind"`
	// Format is the file's format (opus, flac, wav, zip, txt, cue, vtt, png).
	Format string `json:"format"`
	// Track is the logical track a per-track file was made from.
	Track      string    `json:"track,omitempty"`
	DurationMs int64     `json:"duration_ms,omitempty"`
	Bytes      int64     `json:"bytes"`
	SHA256     string    `json:"sha256,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// Participant is someone who took part in the call.
type Participant struct {
	UserID      string     `json:"user_id"`
	DeviceID    string     `json:"device_id,omitempty"`
	DisplayName string     `json:"display_name,omitempty"`
	JoinedAt    time.Time  `json:"joined_at"`
	LeftAt      *time.Time `json:"left_at,omitempty"`
}

// OptOut records a participant who asked not to be recorded.
type OptOut struct {
	UserID string     `json:"user_id"`
	From   time.Time  `json:"from"`
	Until  *time.Time `json:"until,omitempty"`
}

// Marker is a timestamped note on the call's timeline.
type Marker struct {
	AtMs   int64  `json:"at_ms"`
	Text   string `json:"text"`
	UserID string `json:"user_id,omitempty"`
}

// FileEntry is one file: one part of one logical track.
type FileEntry struct {
	File string `json:"file"`
	// Track is the logical track this file is a part of; parts share it and are listed
	// in order.
	Track       string      `json:"track"`
	Part        int         `json:"part"`
	UserID      string      `json:"user_id"`
	DeviceID    string      `json:"device_id"`
	DisplayName string      `json:"display_name,omitempty"`
	Kind        string      `json:"kind"`
	Codec       string      `json:"codec"`
	CodecParams CodecParams `json:"codec_params"`
	Purpose     string      `json:"purpose"`
	Source      string      `json:"source,omitempty"`
	// StartOffsetMs is where the file's first sample sits on the call's timeline.
	StartOffsetMs int64      `json:"start_offset_ms"`
	DurationMs    int64      `json:"duration_ms"`
	StartedAt     time.Time  `json:"started_at"`
	EndedAt       *time.Time `json:"ended_at,omitempty"`
	Status        string     `json:"status"`
	EndReason     string     `json:"end_reason,omitempty"`
	Bytes         int64      `json:"bytes"`
	SHA256        string     `json:"sha256,omitempty"`
	Stats         TrackStats `json:"stats"`
	Gaps          []Gap      `json:"gaps"`
	// GapsOmitted counts gaps beyond the listed ones (the list is bounded).
	GapsOmitted int `json:"gaps_omitted,omitempty"`
	// ClockDriftPPM is how much faster the sender's media clock ran than the recorder's
	// over this file, in parts per million: positive means the file holds that much more
	// media time than the wall-clock time it spans; scaling its length by (1 - ppm/10^6)
	// lines it up with the call to its end. Absent for files under two minutes (drift.go).
	ClockDriftPPM *float64 `json:"clock_drift_ppm,omitempty"`
	// Upload says where the file was copied to (object storage), once that copy is
	// confirmed.
	Upload *Upload `json:"upload,omitempty"`
	// Writer names the program that writes the file when it is not the recorder itself
	// ("livekit-egress"); the recorder never repairs such a file.
	Writer string `json:"writer,omitempty"`
}

// CodecParams are the negotiated codec parameters.
type CodecParams struct {
	MimeType  string `json:"mime_type"`
	ClockRate uint32 `json:"clock_rate"`
	Channels  uint16 `json:"channels,omitempty"`
	Fmtp      string `json:"fmtp,omitempty"`
	Width     int    `json:"width,omitempty"`
	Height    int    `json:"height,omitempty"`
}

// TrackStats counts what happened to a file's packets.
type TrackStats struct {
	PacketsReceived   uint64 `json:"packets_received"`
	PacketsLost       uint64 `json:"packets_lost"`
	PacketsRecovered  uint64 `json:"packets_recovered"`
	PacketsDuplicated uint64 `json:"packets_duplicated"`
	PacketsLate       uint64 `json:"packets_late"`
	PacketsMalformed  uint64 `json:"packets_malformed"`
	PacketsUnknownPT  uint64 `json:"packets_unknown_payload_type"`
	Frames            uint64 `json:"frames"`
	FramesDropped     uint64 `json:"frames_dropped"`
	KeyframeRequests  uint64 `json:"keyframe_requests"`
	FramesUndecrypted uint64 `json:"frames_undecryptable,omitempty"`
	// TimelineJumps counts the times the sender's timeline jumped (a timestamp jump, a
	// stream restart) and the file went on at the frames' arrival time instead of ending:
	// the track had opened as many parts for jumps as it may for now, or the participant
	// had no file left (a broken or hostile sender).
	TimelineJumps uint64 `json:"timeline_jumps,omitempty"`
}

// Gap is a span of a file in which no media arrived.
type Gap struct {
	AtMs       int64  `json:"at_ms"`
	DurationMs int64  `json:"duration_ms"`
	Action     string `json:"action"`
}

// Gap actions.
const (
	GapActionKept      = "kept"      // time kept: Opus silence, or decoder concealment up to 120 ms (RFC 7845 §4.1)
	GapActionSilence   = "silence"   // filled with digital silence
	GapActionNewPart   = "new_part"  // the track continues in the next part
	GapActionTimestamp = "timestamp" // video: timestamps carry the gap
)

// writeJSONAtomic writes v to path so that readers see either the old or the new file:
// temp file in the same folder, fsync, rename, fsync of the folder.
func writeJSONAtomic(path string, v any) error { return writeJSON(path, v, true) }

// WriteJSONAtomic is writeJSONAtomic for files other packages keep beside the manifest
// (the Egress backend's state file).
func WriteJSONAtomic(path string, v any) error { return writeJSONAtomic(path, v) }

// writeJSON is writeJSONAtomic; without durable it skips the fsyncs, which keeps the file
// whole through a crash of the process (the rename is atomic) but not through a power
// loss, where the previous durable version may come back.
func writeJSON(path string, v any, durable bool) error { return writeJSONMode(path, v, durable, 0) }

// writeJSONMode is writeJSON with the file's mode; 0 keeps the mode of the file it
// replaces (0600 for a new one).
func writeJSONMode(path string, v any, durable bool, mode os.FileMode) error {
	if mode == 0 {
		mode = 0o600
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create temp for %s: %w", filepath.Base(path), err)
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmpName, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmpName, err)
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", tmpName, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmpName, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("rename to %s: %w", path, err)
	}
	ok = true
	if !durable {
		return nil
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// ReadManifest reads a call folder's manifest.
func ReadManifest(folder string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(folder, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse manifest in %s: %w", folder, err)
	}
	return &m, nil
}

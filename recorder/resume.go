package recorder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ErrNotResumable is returned by Resume for a folder that cannot be continued.
var ErrNotResumable = errors.New("recording cannot be resumed")

// Resume is one interruption of a recording that was continued in the same folder.
type Resume struct {
	// InterruptedAt is when the earlier run stopped writing (the last file change).
	InterruptedAt time.Time `json:"interrupted_at"`
	ResumedAt     time.Time `json:"resumed_at"`
	// Reason says what interrupted the recording.
	Reason string `json:"reason,omitempty"`
	// CallID is the call recorded after the resume, when it differs from the manifest's.
	CallID string `json:"call_id,omitempty"`
	// Instance is the recorder instance that went on with the recording (a fleet on a
	// shared database; empty for a single recorder), and PreviousInstance the one that
	// recorded before, when another instance took the recording over.
	Instance         string `json:"instance,omitempty"`
	PreviousInstance string `json:"previous_instance,omitempty"`
}

type resumeKey struct{}

type resumeByKey struct{}

// resumeBy says which instance resumes, and which one recorded before.
type resumeBy struct{ instance, previous string }

// WithResumeBy returns a context that makes a resume (WithResume) note in the manifest's
// Resumes entry that instance went on with the recording, after previous (when another
// instance recorded before).
func WithResumeBy(ctx context.Context, instance, previous string) context.Context {
	return context.WithValue(ctx, resumeByKey{}, resumeBy{instance, previous})
}

// WithResume returns a context that makes Recorder.Start continue folder (a call folder
// name in the recordings dir) instead of creating a new one, when that folder belongs to
// the same room and can be resumed. The bot uses it to restart a recording after a crash
// without the call backend knowing: a backend that passes its Start context on to
// Recorder.Start gets the resume for free.
func WithResume(ctx context.Context, folder string) context.Context {
	return context.WithValue(ctx, resumeKey{}, folder)
}

// ResumeFolder returns the folder set by WithResume, if any.
func ResumeFolder(ctx context.Context) string {
	f, _ := ctx.Value(resumeKey{}).(string)
	return f
}

// Resumed reports whether the session continues a folder of an earlier run.
func (s *Session) Resumed() bool { return s.resumed }

// RoomID is the room of the recorded call.
func (s *Session) RoomID() string { return s.manifest.RoomID }

// Kind is the kind of call.
func (s *Session) Kind() Kind { return s.manifest.Kind }

// CallID is the call id the folder was created for.
func (s *Session) CallID() string { return s.manifest.CallID }

// fileEntry returns a copy of a file's manifest entry.
func (s *Session) fileEntry(file string) FileEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.manifest.Tracks {
		if e.File == file {
			e.Gaps = append([]Gap(nil), e.Gaps...)
			return e
		}
	}
	return FileEntry{File: file}
}

// claim marks a folder as recorded by this process; it fails if it already is.
func (r *Recorder) claim(folder string) bool {
	r.openMu.Lock()
	defer r.openMu.Unlock()
	if r.open == nil {
		r.open = map[string]struct{}{}
	}
	if _, ok := r.open[folder]; ok {
		return false
	}
	r.open[folder] = struct{}{}
	return true
}

func (r *Recorder) release(folder string) {
	r.openMu.Lock()
	defer r.openMu.Unlock()
	delete(r.open, folder)
}

// Resume reopens a call folder that an earlier run left behind, so that the recording goes
// on in it: new files continue each logical track's part numbering (a track recorded as
// x.ogg continues as x.part2.ogg), they sit on the same timeline (offsets from the original
// start), and the manifest lists the interruption (Resumes) and marks it on the timeline.
// A folder still marked "recording" is repaired first (RecoverFolder). Finished folders and
// folders of another room (when info.RoomID is set) are refused with ErrNotResumable.
func (r *Recorder) Resume(ctx context.Context, folder string, info CallInfo) (*Session, error) {
	name := filepath.Base(folder)
	if name != folder && filepath.Clean(folder) != filepath.Join(r.opts.Dir, name) {
		return nil, fmt.Errorf("%w: %s is not a call folder in %s", ErrNotResumable, folder, r.opts.Dir)
	}
	if name == "." || name == ".." || name == string(filepath.Separator) {
		return nil, fmt.Errorf("%w: bad folder name %q", ErrNotResumable, folder)
	}
	path := filepath.Join(r.opts.Dir, name)
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a folder", ErrNotResumable, name)
	}
	m, err := ReadManifest(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotResumable, err)
	}
	if info.RoomID != "" && m.RoomID != info.RoomID {
		return nil, fmt.Errorf("%w: %s belongs to another room", ErrNotResumable, name)
	}
	if !r.claim(path) {
		return nil, fmt.Errorf("%w: %s is being recorded already", ErrNotResumable, name)
	}
	ok := false
	defer func() {
		if !ok {
			r.release(path)
		}
	}()
	switch m.Status {
	case StatusRecording:
		rep := RecoverFolder(path, m, r.log)
		*m = rep.Manifest
	case StatusInterrupted:
	default:
		return nil, fmt.Errorf("%w: %s is %s", ErrNotResumable, name, m.Status)
	}
	now := r.opts.Now().UTC()
	prev := *m
	interrupted := m.StartedAt
	if m.EndedAt != nil {
		interrupted = *m.EndedAt
	}
	s := &Session{
		rec: r, folder: path, t0: m.StartedAt, resumed: true,
		logical: map[string]int{}, names: map[string]string{}, active: map[*Track]struct{}{}, domains: map[string]*clockDomain{},
	}
	for _, e := range m.Tracks {
		if e.Part > s.logical[e.Track] {
			s.logical[e.Track] = e.Part
		}
	}
	res := Resume{InterruptedAt: interrupted, ResumedAt: now, Reason: m.Interruption}
	if by, ok := ctx.Value(resumeByKey{}).(resumeBy); ok {
		res.Instance, res.PreviousInstance = by.instance, by.previous
	}
	if info.CallID != "" && info.CallID != m.CallID {
		res.CallID = info.CallID
	}
	m.Resumes = append(m.Resumes, res)
	m.Markers = append(m.Markers,
		Marker{AtMs: interrupted.Sub(m.StartedAt).Milliseconds(), Text: "recording interrupted"},
		Marker{AtMs: now.Sub(m.StartedAt).Milliseconds(), Text: "recording resumed"})
	m.Status = StatusRecording
	m.EndedAt = nil
	m.Interruption = ""
	if m.Participants == nil {
		m.Participants = []Participant{}
	}
	if m.Tracks == nil {
		m.Tracks = []FileEntry{}
	}
	s.manifest = *m
	s.log = r.log.With().Str("call_id", m.CallID).Str("room_id", m.RoomID).Str("folder", name).Logger()
	if err := s.writeNow(); err != nil {
		return nil, err
	}
	if err := r.opts.Hooks.sessionStart(s); err != nil {
		if werr := writeJSONAtomic(filepath.Join(path, ManifestFile), &prev); werr != nil {
			err = errors.Join(err, werr)
		}
		return nil, fmt.Errorf("recording refused: %w", err)
	}
	ok = true
	s.log.Info().Time("interrupted_at", interrupted).Msg("Recording resumed in the same folder")
	return s, nil
}

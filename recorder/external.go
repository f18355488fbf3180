package recorder

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// External describes a file of the call that another program writes, such as LiveKit
// Egress: the session names it like its own files (logical track, part number), lists it
// in the manifest on the call's timeline and tells the hooks, but writes no media itself.
//
// The life of one: AddExternal names it (the program is asked to write there);
// ActivateExternal says the program writes (the hooks hear of a local file now, so it can
// be uploaded as it grows); DropExternal forgets one the program never started;
// FinishExternal records how it came out.
type External struct {
	// Info says whose track it is and its codec (MimeType, ClockRate, Channels).
	Info TrackInfo
	// Track names the logical track instead of Info (a recording of the whole room).
	Track string
	// Ext is the file extension with its dot (".ogg"); empty: the codec's own.
	Ext string
	// Kind overrides "audio"/"video" from the codec.
	Kind string
	// Remote: the program uploads the file to object storage itself and no copy appears in
	// the call folder. Its entry reaches the hooks only when it is finished (with its
	// Upload), so nothing waits for a local file.
	Remote bool
	// Writer names the program in the manifest ("livekit-egress"); crash recovery leaves
	// its files alone.
	Writer string
}

// externalState is what the session knows of a file another program writes.
type externalState struct {
	remote bool
	// told: the hooks heard of the file (OnPartStart).
	told bool
}

// ExternalResult is what the other program reports about a finished file.
type ExternalResult struct {
	// StartedAt is when the file's first media was captured (zero: when it was registered).
	StartedAt     time.Time
	Duration      time.Duration
	Width, Height int
	// Upload says where a remote file is; nil for a file in the call folder.
	Upload *Upload
	// Failed, when set, says why the file did not come out (no file, or an unusable one).
	Failed string
	// Reason says why the file ended.
	Reason string
}

// ErrNotExternal is returned when finishing a file the session did not register as external.
var ErrNotExternal = errors.New("not an external file of this call")

// AddExternal registers the next part of a logical track that another program writes
// from started on, and returns its file name (the program must write exactly there, or
// upload under that name). The hooks do not hear of it yet (see ActivateExternal).
func (s *Session) AddExternal(x External, started time.Time) (string, error) {
	c, known := x.Info.Codec()
	ext := x.Ext
	if ext == "" {
		ext = ".bin"
		if known {
			ext = c.Container.Extension
		}
	}
	if len(ext) < 2 || ext[0] != '.' || Sanitize(ext[1:]) != ext[1:] {
		return "", fmt.Errorf("bad file extension %q", ext)
	}
	lid := x.Track
	if lid == "" {
		lid = x.Info.logicalID()
	} else {
		lid = Sanitize(lid)
	}
	kind := x.Kind
	if kind == "" {
		kind = x.Info.Kind()
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return "", ErrSessionClosed
	}
	// The file counts against the call and its participant like a track's (limits.go).
	if err := s.claimFileLocked(x.Info.UserID); err != nil {
		s.mu.Unlock()
		return "", err
	}
	s.unreserveLocked(x.Info.UserID)
	codecName := media.CodecUnknown.String()
	if known {
		codecName = string(c.ID)
	}
	e := s.addPartLocked(lid, ext, x.Info, kind, codecName, started.Sub(s.t0), started)
	e.Writer = x.Writer
	file := e.File
	if s.external == nil {
		s.external = map[string]*externalState{}
	}
	s.external[file] = &externalState{remote: x.Remote}
	s.changedLocked(true)
	s.mu.Unlock()
	s.log.Info().Str("file", file).Bool("remote", x.Remote).Msg("Registered a file another program writes")
	return file, nil
}

// AdoptExternal takes back a file another program went on writing while the recorder was
// down (a resumed session): its entry, left interrupted by the crash, is recording again
// and it can be activated and finished like a new one. Only entries with a Writer can be
// adopted.
func (s *Session) AdoptExternal(file string, remote bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrSessionClosed
	}
	if _, ok := s.external[file]; ok {
		return nil
	}
	for i := range s.manifest.Tracks {
		e := &s.manifest.Tracks[i]
		if e.File != file {
			continue
		}
		if e.Writer == "" {
			return fmt.Errorf("%s: %w", file, ErrNotExternal)
		}
		e.Status = StatusRecording
		e.EndReason = ""
		e.EndedAt = nil
		if s.external == nil {
			s.external = map[string]*externalState{}
		}
		s.external[file] = &externalState{remote: remote}
		s.changedLocked(true)
		return nil
	}
	return fmt.Errorf("%s: %w", file, ErrNoSuchFile)
}

// ActivateExternal says the program writes the file now: the hooks hear of a local file
// (OnPartStart), so storage can follow it as it grows. It may be called more than once.
func (s *Session) ActivateExternal(file string) error {
	s.mu.Lock()
	st, ok := s.external[file]
	tell := ok && !st.remote && !st.told
	if tell {
		st.told = true
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s: %w", file, ErrNotExternal)
	}
	if tell {
		s.rec.opts.Hooks.partStart(s, s.fileEntry(file))
	}
	return nil
}

// DropExternal forgets a file the program never started (no media ever came), as if it
// had not been registered: its entry leaves the manifest and, if it was the newest part of
// its track, the part number is given back. A file the hooks heard of is not dropped.
func (s *Session) DropExternal(file string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.external[file]
	if !ok {
		return fmt.Errorf("%s: %w", file, ErrNotExternal)
	}
	if st.told {
		return fmt.Errorf("%s: the file was already announced", file)
	}
	delete(s.external, file)
	for i, e := range s.manifest.Tracks {
		if e.File != file {
			continue
		}
		s.manifest.Tracks = append(s.manifest.Tracks[:i], s.manifest.Tracks[i+1:]...)
		if s.logical[e.Track] == e.Part {
			s.logical[e.Track]--
		}
		break
	}
	s.changedLocked(true)
	return nil
}

// FinishExternal records how an external file came out and hands it to the hooks. A local
// file's size and SHA-256 are read from the folder; a local file that is missing, or a
// result with Failed set, leaves the entry interrupted.
func (s *Session) FinishExternal(file string, r ExternalResult) error {
	s.mu.Lock()
	st, ok := s.external[file]
	if ok {
		delete(s.external, file)
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s: %w", file, ErrNotExternal)
	}
	var size int64
	var sum string
	failed := r.Failed
	if r.Upload == nil {
		n, h, err := fileDigest(s.path(file))
		switch {
		case err == nil:
			size, sum = n, h
		case errors.Is(err, os.ErrNotExist) && failed == "":
			failed = "the file did not appear in the call folder"
		case failed == "":
			failed = "the file could not be read: " + err.Error()
		}
	}
	s.updateEntry(file, true, func(e *FileEntry) {
		if !r.StartedAt.IsZero() {
			e.StartedAt = r.StartedAt.UTC()
			e.StartOffsetMs = max(r.StartedAt.Sub(s.t0).Milliseconds(), 0)
		}
		e.DurationMs = r.Duration.Milliseconds()
		ended := e.StartedAt.Add(r.Duration).UTC()
		e.EndedAt = &ended
		if r.Upload != nil {
			e.Bytes = r.Upload.Bytes
			e.SHA256 = r.Upload.SHA256
			u := *r.Upload
			e.Upload = &u
		} else {
			e.Bytes, e.SHA256 = size, sum
		}
		e.CodecParams.Width, e.CodecParams.Height = r.Width, r.Height
		e.Status = StatusComplete
		e.EndReason = r.Reason
		if failed != "" {
			e.Status = StatusInterrupted
			e.EndReason = failed
			if r.Reason != "" {
				e.EndReason = r.Reason + "; " + failed
			}
		}
	})
	// A remote file reaches the hooks only now, complete, with where it went (OnPartStart
	// would have them wait for a local file); a local one that was never activated is
	// announced first, as every part is.
	entry := s.fileEntry(file)
	if !st.remote && !st.told {
		s.rec.opts.Hooks.partStart(s, entry)
	}
	s.rec.opts.Hooks.partComplete(s, entry)
	ev := s.log.Info()
	if failed != "" {
		ev = s.log.Warn().Str("failure", failed)
	}
	ev.Str("file", file).Dur("duration", r.Duration).Int64("bytes", entry.Bytes).Msg("File written by another program finished")
	return nil
}

// ExternalFiles lists the external files not finished yet.
func (s *Session) ExternalFiles() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.external))
	for f := range s.external {
		out = append(out, f)
	}
	return out
}

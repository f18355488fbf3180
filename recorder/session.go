package recorder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// GapPolicy values (see config).
const (
	GapKeep  = "keep"
	GapFill  = "fill"
	GapSplit = "split"
)

// Options configure a Recorder.
type Options struct {
	// Dir is the recordings root; one folder per call is created in it.
	Dir string
	// FlushInterval is the recovery point: media reaches the file at least this often.
	FlushInterval time.Duration
	// Fsync makes each flush an fsync.
	Fsync bool
	// GapPolicy is GapKeep, GapFill or GapSplit; SplitAfter applies to GapSplit.
	GapPolicy  string
	SplitAfter time.Duration
	// AudioJitter and VideoJitter bound how long a missing packet is waited for.
	AudioJitter time.Duration
	VideoJitter time.Duration
	// MaxTracks bounds the files of one call, all participants together.
	MaxTracks int
	// MaxFilesPerParticipant bounds the files of one participant (one user id, all devices)
	// in a call, so that one sender cannot take the files everybody else's tracks need.
	// 0 means half of MaxTracks; it is never more than MaxTracks-1, so one participant
	// never reaches the call's limit alone (unless MaxTracks is 1).
	MaxFilesPerParticipant int
	// Version is written into each manifest.
	Version string
	// Now is the clock: the call's timeline and the arrival time of every packet come
	// from it. nil means time.Now; tests pass a fake clock that their TrackSource moves.
	Now func() time.Time
	// Hooks follow sessions and files as they change (nil: none). See Hooks.
	Hooks *Hooks
	// DirMode and FileMode are the permissions of call folders and of the files written
	// in them (media, manifests); zero means 0700 and 0600.
	DirMode  os.FileMode
	FileMode os.FileMode
}

func (o *Options) fill() {
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.GapPolicy == "" {
		o.GapPolicy = GapKeep
	}
	if o.SplitAfter <= 0 {
		o.SplitAfter = 30 * time.Second
	}
	if o.AudioJitter <= 0 {
		o.AudioJitter = 100 * time.Millisecond
	}
	if o.VideoJitter <= 0 {
		o.VideoJitter = 300 * time.Millisecond
	}
	if o.MaxTracks <= 0 {
		o.MaxTracks = 64
	}
	if o.MaxFilesPerParticipant <= 0 {
		o.MaxFilesPerParticipant = o.MaxTracks / 2
	}
	o.MaxFilesPerParticipant = max(1, min(o.MaxFilesPerParticipant, o.MaxTracks-1))
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DirMode == 0 {
		o.DirMode = 0o700
	}
	if o.FileMode == 0 {
		o.FileMode = 0o600
	}
}

// Recorder creates call folders under one root.
type Recorder struct {
	opts Options
	log  zerolog.Logger

	openMu sync.Mutex
	open   map[string]struct{} // folders being recorded (see claim)

	// newWriter opens the container writer of a part and probe checks that a call folder
	// takes new files again after a write error (probeSpace): seams for tests, which put a
	// file system that fails on purpose behind them.
	newWriter func(t *Track, path string, o Options) (media.Writer, error)
	probe     func(folder string) error
	// digest returns a finished file's size and SHA-256 (fileDigest; tests hold it up).
	digest func(path string) (int64, string, error)
}

// New prepares the recordings root.
func New(opts Options, log zerolog.Logger) (*Recorder, error) {
	opts.fill()
	if opts.Dir == "" {
		return nil, errors.New("recordings dir is empty")
	}
	if err := os.MkdirAll(opts.Dir, opts.DirMode); err != nil {
		return nil, fmt.Errorf("create recordings dir: %w", err)
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolve recordings dir: %w", err)
	}
	opts.Dir = abs
	return &Recorder{opts: opts, log: log, newWriter: newWriter, probe: probeSpace, digest: fileDigest}, nil
}

// Dir is the absolute recordings root.
func (r *Recorder) Dir() string { return r.opts.Dir }

// CallInfo identifies a call.
type CallInfo struct {
	CallID string
	RoomID string
	// Kind is the kind of call.
	Kind Kind
}

// Session is the recording of one call: one folder, one manifest, many tracks.
type Session struct {
	rec    *Recorder
	log    zerolog.Logger
	folder string
	t0     time.Time

	mu       sync.Mutex
	manifest Manifest
	logical  map[string]int // logical track id -> parts so far
	names    map[string]string
	active   map[*Track]struct{}
	domains  map[string]*clockDomain
	closing  bool
	closed   bool
	done     sync.WaitGroup
	// reserved counts files that tracks may open but have not registered yet, per user id
	// (see claimFileLocked); nreserved is their sum.
	reserved  map[string]int
	nreserved int
	// running counts the tracks whose Run loop is on: their flushes write pending
	// manifest changes (see changedLocked).
	running int
	// The manifest on disk: dirty when it changed since the last write, durable when a
	// change among those must be fsynced; lastWrite is when it was last written (or
	// tried), writes how often (tests measure it), failing whether the last try failed.
	dirty     bool
	durable   bool
	lastWrite time.Time
	writes    int
	failing   bool
	// resumed: the session continues a folder left by an earlier run (Recorder.Resume).
	resumed bool
	// external lists the files other programs are writing (external.go).
	external map[string]*externalState
	// digests counts the SHA-256 computations of finished parts still running
	// (digestLater); digestMu lets one run at a time. digestsWaited (under mu) is set
	// when end waits for them: no digest is added to the group after that.
	digests       sync.WaitGroup
	digestMu      sync.Mutex
	digestsWaited bool
}

// Start creates the call folder and writes the first manifest.
func (r *Recorder) Start(ctx context.Context, info CallInfo) (*Session, error) {
	if folder := ResumeFolder(ctx); folder != "" {
		s, err := r.Resume(ctx, folder, info)
		if err == nil {
			return s, nil
		}
		r.log.Warn().Err(err).Str("folder", folder).Msg("Could not resume the recording; starting a new folder")
	}
	now := r.opts.Now().UTC()
	name := FolderName(now, info.RoomID, info.CallID)
	folder := filepath.Join(r.opts.Dir, name)
	// The root may have been removed while the bot ran (an operator cleaning up, a
	// remounted disk): recreate it rather than refuse every recording.
	if err := os.MkdirAll(r.opts.Dir, r.opts.DirMode); err != nil {
		return nil, fmt.Errorf("create recordings dir: %w", err)
	}
	// A second call with the same id in the same second gets a numbered folder.
	for i := 2; ; i++ {
		err := os.Mkdir(folder, r.opts.DirMode)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || i > 100 {
			return nil, fmt.Errorf("create call folder: %w", err)
		}
		folder = filepath.Join(r.opts.Dir, fmt.Sprintf("%s-%d", name, i))
	}
	r.claim(folder)
	s := &Session{
		rec:     r,
		folder:  folder,
		t0:      now,
		logical: map[string]int{},
		names:   map[string]string{},
		active:  map[*Track]struct{}{},
		domains: map[string]*clockDomain{},
		manifest: Manifest{
			Version:      ManifestVersion,
			CallID:       info.CallID,
			RoomID:       info.RoomID,
			Kind:         info.Kind,
			Status:       StatusRecording,
			StartedAt:    now,
			Recorder:     r.opts.Version,
			Participants: []Participant{},
			Tracks:       []FileEntry{},
		},
	}
	s.log = r.log.With().Str("call_id", info.CallID).Str("room_id", info.RoomID).Str("folder", filepath.Base(folder)).Logger()
	if err := s.writeNow(); err != nil {
		r.release(folder)
		return nil, errors.Join(err, os.RemoveAll(folder))
	}
	if err := r.opts.Hooks.sessionStart(s); err != nil {
		r.release(folder)
		return nil, errors.Join(fmt.Errorf("recording refused: %w", err), os.RemoveAll(folder))
	}
	s.log.Info().Msg("Recording started")
	return s, nil
}

// Folder is the absolute path of the call folder.
func (s *Session) Folder() string { return s.folder }

// StartedAt is the zero of the call's timeline.
func (s *Session) StartedAt() time.Time { return s.t0 }

// Offset converts a wall-clock time to milliseconds on the call's timeline.
func (s *Session) Offset(t time.Time) int64 { return t.Sub(s.t0).Milliseconds() }

// edit changes the manifest under the session lock, unless it is final (the session
// closed): fn returns whether it changed anything, which is then written as a structural
// change (changedLocked).
func (s *Session) edit(fn func(m *Manifest) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return // the manifest is final
	}
	if fn(&s.manifest) {
		s.changedLocked(true)
	}
}

// AddParticipant records that someone joined (or updates their display name, or moves their
// join time earlier when a backend learns a better one).
func (s *Session) AddParticipant(userID, deviceID, displayName string, at time.Time) {
	s.edit(func(m *Manifest) bool {
		for i := range m.Participants {
			p := &m.Participants[i]
			if p.UserID == userID && p.DeviceID == deviceID && p.LeftAt == nil {
				if displayName != "" {
					p.DisplayName = displayName
				}
				// A backend that learns a better (earlier) join time later says so again:
				// the earliest wins.
				if !at.IsZero() && at.UTC().Before(p.JoinedAt) {
					p.JoinedAt = at.UTC()
					return true
				}
				return false
			}
		}
		m.Participants = append(m.Participants, Participant{UserID: userID, DeviceID: deviceID, DisplayName: displayName, JoinedAt: at.UTC()})
		return true
	})
}

// RemoveParticipant records that someone left.
func (s *Session) RemoveParticipant(userID, deviceID string, at time.Time) {
	s.edit(func(m *Manifest) bool {
		for i := range m.Participants {
			p := &m.Participants[i]
			if p.UserID == userID && p.DeviceID == deviceID && p.LeftAt == nil {
				t := at.UTC()
				p.LeftAt = &t
			}
		}
		return true
	})
}

// AddWarning records a problem in the manifest, once per distinct text.
func (s *Session) AddWarning(text string) {
	s.edit(func(m *Manifest) bool {
		for _, w := range m.Warnings {
			if w == text {
				return false
			}
		}
		m.Warnings = append(m.Warnings, text)
		return true
	})
}

// AddMarker stores a note on the timeline.
func (s *Session) AddMarker(userID, text string, at time.Time) {
	s.edit(func(m *Manifest) bool {
		m.Markers = append(m.Markers, Marker{AtMs: s.Offset(at), Text: text, UserID: userID})
		return true
	})
}

// SetOptOut records that a user opted out (optOut) or back in.
func (s *Session) SetOptOut(userID string, optOut bool, at time.Time) {
	s.edit(func(m *Manifest) bool {
		t := at.UTC()
		if optOut {
			m.OptOuts = append(m.OptOuts, OptOut{UserID: userID, From: t})
			return true
		}
		for i := range m.OptOuts {
			if m.OptOuts[i].UserID == userID && m.OptOuts[i].Until == nil {
				m.OptOuts[i].Until = &t
			}
		}
		return true
	})
}

// Manifest returns a copy of the current manifest.
func (s *Session) Manifest() Manifest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.copyManifestLocked()
}

func (s *Session) copyManifestLocked() Manifest {
	m := s.manifest
	m.Participants = append([]Participant(nil), m.Participants...)
	m.OptOuts = append([]OptOut(nil), m.OptOuts...)
	m.Markers = append([]Marker(nil), m.Markers...)
	m.Warnings = append([]string(nil), m.Warnings...)
	m.Tracks = make([]FileEntry, len(s.manifest.Tracks))
	for i, t := range s.manifest.Tracks {
		t.Gaps = append([]Gap(nil), t.Gaps...)
		if t.Upload != nil {
			u := *t.Upload
			t.Upload = &u
		}
		m.Tracks[i] = t
	}
	m.Resumes = append([]Resume(nil), m.Resumes...)
	return m
}

// Manifest writes. Every change reaches manifest.json atomically (writeJSON), but not
// necessarily at once: a sender whose timeline keeps jumping would otherwise rewrite (and
// fsync) the whole manifest for every part it opens and closes, a cost that grows with the
// parts per second and with the manifest. A change is written at once when the last write
// is at least manifestInterval (half the flush interval) ago, else it waits for the next
// flush of a running track (every flush_interval), which writes whatever is pending: one
// write at a time under the session lock, at most one more pending, and every file
// started or finished on disk within the flush interval, the recovery point media has
// too. With no running track, a change is written at once.
//
// Structural changes (a file, a participant, a marker, a warning) are fsynced; refreshes
// of durations and counters every manifestRefresh are not (recovery recomputes those from
// the files), which keeps the file whole through a crash of the process.

// changedLocked notes a change of the manifest and writes it if it is due.
func (s *Session) changedLocked(structural bool) {
	s.dirty = true
	s.durable = s.durable || structural
	s.persistLocked(s.running == 0 && structural)
}

// persistLocked writes pending changes if they are due, or now if force.
func (s *Session) persistLocked(force bool) {
	if !s.dirty || s.closed {
		return
	}
	since := s.rec.opts.Now().Sub(s.lastWrite)
	if !force && since < manifestRefresh && (!s.durable || since < s.rec.opts.manifestInterval()) {
		return
	}
	_ = s.writeLocked()
}

// writeNow writes the manifest at once; the caller must not hold mu.
func (s *Session) writeNow() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty = true
	return s.writeLocked()
}

// writeLocked writes the manifest, fsynced if a structural change is pending. A failure
// (a full disk) is logged once as an error, the change stays pending and is tried again
// when the next one is due; the previous manifest.json stays whole (writeJSON).
func (s *Session) writeLocked() error {
	now := s.rec.opts.Now()
	if s.manifest.EndedAt != nil {
		s.manifest.DurationMs = s.manifest.EndedAt.Sub(s.t0).Milliseconds()
	} else {
		s.manifest.DurationMs = now.Sub(s.t0).Milliseconds()
	}
	sort.SliceStable(s.manifest.Tracks, func(i, j int) bool {
		a, b := s.manifest.Tracks[i], s.manifest.Tracks[j]
		if a.Track != b.Track {
			return a.Track < b.Track
		}
		return a.Part < b.Part
	})
	s.lastWrite = now
	s.writes++
	err := writeJSONMode(filepath.Join(s.folder, ManifestFile), &s.manifest, s.durable, s.rec.opts.FileMode)
	switch {
	case err != nil && !s.failing:
		s.failing = true
		s.log.Error().Err(err).Msg("Failed to write manifest; trying again with the next change")
	case err != nil:
		s.log.Debug().Err(err).Msg("Failed to write manifest again")
	case s.failing:
		s.failing = false
		s.log.Info().Msg("Manifest written again")
	}
	if err == nil {
		s.dirty, s.durable = false, false
	}
	return err
}

// tick writes pending manifest changes that are due: the flush of a track without a part.
func (s *Session) tick() {
	s.mu.Lock()
	s.persistLocked(false)
	s.mu.Unlock()
}

// manifestRefresh is how often a running track's durations and counters reach the
// manifest on disk.
const manifestRefresh = 5 * time.Second

// manifestInterval is the least time between two writes of the manifest for structural
// changes (see changedLocked).
func (o *Options) manifestInterval() time.Duration { return o.FlushInterval / 2 }

// ErrSessionClosed is returned when adding a track to a session that is ending.
var ErrSessionClosed = errors.New("recording is ending")

// Close stops every track, finalises their files and writes the final manifest. Tracks
// that do not stop before ctx ends are left as they are (their files are playable up to
// the last flush) and reported in the error.
func (s *Session) Close(ctx context.Context) (Manifest, error) { return s.end(ctx, "") }

// Pause ends the session for a planned restart of the recorder: every track stops and its
// file is finalised as by Close, but the manifest says interrupted, with reason as its
// interruption, so that Recorder.Resume continues the folder in new parts on the same
// timeline (the resume is listed in Resumes). Files another program still writes (External)
// are left to it, marked interrupted as after a crash, for the resumed session to adopt.
// The hooks hear of the end (OnSessionEnd) with that manifest.
func (s *Session) Pause(ctx context.Context, reason string) (Manifest, error) {
	if reason == "" {
		reason = "paused"
	}
	return s.end(ctx, reason)
}

// End is Pause when pause is set, else Close: for a backend whose recording either ends
// or pauses for a restart by the same steps.
func (s *Session) End(ctx context.Context, pause bool, reason string) (Manifest, error) {
	if pause {
		return s.Pause(ctx, reason)
	}
	return s.Close(ctx)
}

// end is Close, or Pause when paused is set (the interruption's reason).
func (s *Session) end(ctx context.Context, paused string) (Manifest, error) {
	s.mu.Lock()
	if s.closed {
		m := s.copyManifestLocked()
		s.mu.Unlock()
		return m, nil
	}
	firstClose := !s.closing
	s.closing = true
	tracks := make([]*Track, 0, len(s.active))
	for t := range s.active {
		tracks = append(tracks, t)
	}
	s.mu.Unlock()
	if firstClose {
		s.rec.opts.Hooks.sessionClosing(s)
	}

	for _, t := range tracks {
		t.stop()
	}
	waited := make(chan struct{})
	go func() {
		s.done.Wait()
		close(waited)
	}()
	var err error
	select {
	case <-waited:
	case <-ctx.Done():
		err = fmt.Errorf("tracks did not finish in time: %w", ctx.Err())
	}
	// Every file that closed is final by now, and manifest.json says so in its entry (the
	// last track's end wrote it). Their SHA-256 come after, from digestLater (hashing an
	// hour of video takes seconds): the finished manifest waits for them, so that it is
	// whole, and so does OnSessionEnd, which comes after every part's OnPartComplete. A
	// digest reads a local file and always ends; it is not bounded by ctx, since a part
	// left without its OnPartComplete would never be uploaded.
	s.mu.Lock()
	s.digestsWaited = true
	s.mu.Unlock()
	s.digests.Wait()

	s.mu.Lock()
	firstEnd := !s.closed
	s.closed = true
	end := s.rec.opts.Now().UTC()
	s.manifest.EndedAt = &end
	s.manifest.Status = StatusFinished
	if err != nil {
		s.manifest.Interruption = err.Error()
	}
	if paused != "" && firstEnd {
		s.manifest.Status = StatusInterrupted
		s.manifest.Interruption = paused
		if err != nil {
			s.manifest.Interruption += "; " + err.Error()
		}
		for i := range s.manifest.Tracks {
			switch t := &s.manifest.Tracks[i]; {
			case t.Status != StatusRecording:
			case t.Writer != "":
				t.Status = StatusInterrupted
				t.EndReason = writerStopped(t)
			default: // its track did not stop in time: playable up to its last flush
				t.Status = StatusInterrupted
				t.EndReason = "the recorder paused before this file was finalised"
			}
		}
	}
	for i := range s.manifest.Participants {
		if s.manifest.Participants[i].LeftAt == nil {
			s.manifest.Participants[i].LeftAt = &end
		}
	}
	for i := range s.manifest.OptOuts {
		if s.manifest.OptOuts[i].Until == nil {
			s.manifest.OptOuts[i].Until = &end
		}
	}
	s.dirty, s.durable = true, true
	if serr := s.writeLocked(); serr != nil {
		err = errors.Join(err, serr)
	}
	if s.manifest.Status == StatusInterrupted {
		s.log.Info().Int64("duration_ms", s.manifest.DurationMs).Int("files", len(s.manifest.Tracks)).Str("reason", paused).Msg("Recording paused")
	} else {
		s.log.Info().Int64("duration_ms", s.manifest.DurationMs).Int("files", len(s.manifest.Tracks)).Msg("Recording finished")
	}
	m := s.copyManifestLocked()
	s.mu.Unlock()
	s.rec.release(s.folder)
	if firstEnd {
		s.rec.opts.Hooks.sessionEnd(s, m)
	}
	return m, err
}

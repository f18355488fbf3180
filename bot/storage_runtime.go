package bot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/lifecycle/download"
	"github.com/matrix-recorder/matrix-recorder/lifecycle/upload"
	"github.com/matrix-recorder/matrix-recorder/metrics"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// storeRT connects recordings to the state database, uploads, limits, retention, links
// in the room and the HTTP server. The recorder reports to it through recorder.Hooks.
type storeRT struct {
	b   *Bot
	cfg config.Config
	log zerolog.Logger
	db  *storage.DB
	s3  *s3store.Store // nil without storage.s3
	// signer signs the bot's own download links; nil without http.listen.
	signer *download.Signer
	up     *upload.Uploader // nil without storage.s3
	m      *metrics.Metrics
	now    func() time.Time
	// statfs reports the free bytes of the recordings disk; say posts a notice; stop ends
	// a room's recording. Tests replace them.
	statfs func(dir string) (int64, error)
	say    func(ctx context.Context, roomID id.RoomID, text string)
	stop   func(ctx context.Context, roomID id.RoomID, kind, why string)
	edit   func(ctx context.Context, lr *liveRec, status string)

	ctx    context.Context // ends at shutdown; background work watches it
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// drainCtx ends when shutdown begins: summaries stop waiting for uploads then.
	drainCtx context.Context
	drain    context.CancelFunc
	posting  counter // summaries not posted yet

	mu        sync.Mutex
	live      map[string]*liveRec // by folder name
	manifests sync.Mutex          // serialises manifest rewrites of finished folders
	// delivering holds the recordings whose delivery runs in this process, with what
	// ends it (the recording's deletion does).
	delivering map[string]context.CancelFunc
	// notifyRetry paces the retries of summaries that could not be posted.
	notifyRetry map[string]*retryState
	// sendBackoff is the pause between attempts to post a message, uploadPoll how often a
	// posted summary looks at uploads that are still going (tests shorten them).
	sendBackoff time.Duration
	uploadPoll  time.Duration
	startup     []startupItem // what the last run left, handled after the first sync
	httpAddr    string
}

// liveRec is a recording in progress.
type liveRec struct {
	id     string
	sess   *recorder.Session
	roomID id.RoomID
	kind   string
	// inviter invited the bot into the room ("" unknown): recordings.max_per_inviter.
	inviter id.UserID
	// The start notice, edited with progress.
	startEvent id.EventID
	startText  string
	lastEdit   time.Time
	// Limits.
	warnedDuration, warnedSize bool
	stopping                   bool
	stopWhy                    string
}

func newStoreRT(ctx context.Context, b *Bot) (*storeRT, error) {
	cfg := b.cfg
	st := &storeRT{
		b: b, cfg: cfg, log: b.log.With().Str("component", "storage").Logger(), now: time.Now, statfs: freeBytes,
		live: map[string]*liveRec{}, delivering: map[string]context.CancelFunc{}, notifyRetry: map[string]*retryState{},
		sendBackoff: 2 * time.Second, uploadPoll: 30 * time.Second,
		say:  func(ctx context.Context, roomID id.RoomID, text string) { b.notice(ctx, roomID, text, "") },
		stop: b.stopRecording,
	}
	st.edit = st.editStart
	st.ctx, st.cancel = context.WithCancel(context.WithoutCancel(ctx))
	st.drainCtx, st.drain = context.WithCancel(st.ctx)
	db, err := storage.Open(ctx, filepath.Join(cfg.DataDir, storage.FileName))
	if err != nil {
		return nil, err
	}
	st.db = db
	if cfg.HTTP.Listen != "" {
		if st.signer, err = download.LoadSigner(cfg.DataDir); err != nil {
			return nil, errors.Join(err, db.Close())
		}
	}
	st.m = metrics.New(st.liveStats, func() (int64, bool) {
		free, err := st.statfs(cfg.Recordings.Dir)
		return free, err == nil
	})
	if s3c := cfg.Storage.S3; s3c.Enabled() {
		access, secret, err := s3c.Credentials()
		if err != nil {
			return nil, errors.Join(err, db.Close())
		}
		st.s3, err = s3store.New(s3store.Config{
			Endpoint: s3c.Endpoint, Bucket: s3c.Bucket, Region: s3c.Region, Prefix: s3c.Prefix,
			AccessKey: access, SecretKey: secret, PathStyle: s3c.PathStyle, TLS: s3c.TLS,
		})
		if err != nil {
			return nil, errors.Join(err, db.Close())
		}
		dir, err := filepath.Abs(cfg.Recordings.Dir)
		if err != nil {
			return nil, errors.Join(err, db.Close())
		}
		st.up = upload.New(st.ctx, db, st.s3, upload.Options{
			Dir: dir, PartSize: int64(s3c.PartSize), Log: st.log,
			OnConfirmed: st.uploadConfirmed,
			OnFailure:   func(*storage.Upload, error) { st.m.UploadFailures.Inc() },
			OnSent:      func(n int64) { st.m.UploadedBytes.Add(float64(n)) },
		})
	}
	return st, nil
}

// hooks are what the recorder calls.
func (st *storeRT) hooks() *recorder.Hooks {
	return &recorder.Hooks{
		OnSessionStart:   st.onSessionStart,
		OnPartStart:      st.onPartStart,
		OnPartComplete:   st.onPartComplete,
		OnSessionClosing: st.onSessionClosing,
		OnSessionEnd:     st.onSessionEnd,
	}
}

// dbCtx bounds one database call made from a hook.
func (st *storeRT) dbCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(st.ctx), 10*time.Second)
}

func freeBytes(dir string) (int64, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(fs.Bavail) * int64(fs.Bsize), nil
}

// onSessionStart refuses a recording when the disk is (nearly) full or a limit on
// recordings at once is reached (a resumed one was admitted before), and records it.
func (st *storeRT) onSessionStart(s *recorder.Session) error {
	if min := int64(st.cfg.Recordings.MinFreeSpace); min > 0 {
		if free, err := st.statfs(filepath.Dir(s.Folder())); err == nil && free < min {
			return fmt.Errorf("the recordings disk has only %s free (recordings.min_free_space is %s)", config.Size(free), config.Size(min))
		}
	}
	ctx, cancel := st.dbCtx()
	defer cancel()
	folder := filepath.Base(s.Folder())
	roomID := id.RoomID(s.RoomID())
	lr := &liveRec{sess: s, roomID: roomID, kind: s.Kind(), inviter: st.inviterOf(ctx, roomID)}
	// Checked and taken under one lock, so two starts cannot both take the last slot.
	st.mu.Lock()
	if !s.Resumed() {
		if err := st.admitLocked(roomID, lr.inviter, lr.kind); err != nil {
			st.mu.Unlock()
			return err
		}
	}
	st.live[folder] = lr
	st.mu.Unlock()
	r := &storage.Recording{RoomID: s.RoomID(), CallID: s.CallID(), Kind: s.Kind(), Folder: folder, StartedAt: s.StartedAt()}
	if err := st.db.CreateRecording(ctx, r); err != nil {
		// Recording matters more than bookkeeping: go on, loudly.
		st.log.Error().Err(err).Str("folder", folder).Msg("Could not record the new recording in the state database")
	} else if s.Resumed() {
		r.Status = storage.RecordingStarted
		r.EndedAt = time.Time{}
		r.ExpiresAt = time.Time{}
		r.ExpiryNoticedAt = time.Time{}
		if err := st.db.UpdateRecording(ctx, r); err != nil {
			st.log.Error().Err(err).Msg("Could not mark the resumed recording")
		}
	}
	st.mu.Lock()
	lr.id = r.ID
	st.mu.Unlock()
	st.m.RecordingsStarted.Inc()
	return nil
}

func (st *storeRT) liveRec(s *recorder.Session) *liveRec {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.live[filepath.Base(s.Folder())]
}

func (st *storeRT) partRow(recID string, e recorder.FileEntry) *storage.Part {
	p := &storage.Part{
		RecordingID: recID, File: e.File, Track: e.Track, Part: e.Part, UserID: e.UserID, DeviceID: e.DeviceID,
		DisplayName: e.DisplayName, Kind: e.Kind, Codec: e.Codec, Source: e.Source, StartedAt: e.StartedAt,
		StartMs: e.StartOffsetMs, DurationMs: e.DurationMs, Bytes: e.Bytes, SHA256: e.SHA256, EndReason: e.EndReason,
	}
	if e.EndedAt != nil {
		p.EndedAt = *e.EndedAt
	}
	switch e.Status {
	case recorder.StatusRecording:
		p.Status = storage.PartActive
	case recorder.StatusComplete:
		p.Status = storage.PartSaved
	default:
		p.Status = storage.PartInterrupted
	}
	return p
}

// onPartStart writes the part's row before its file exists and starts following it.
func (st *storeRT) onPartStart(s *recorder.Session, e recorder.FileEntry) {
	lr := st.liveRec(s)
	if lr == nil || lr.id == "" {
		return
	}
	ctx, cancel := st.dbCtx()
	defer cancel()
	p := st.partRow(lr.id, e)
	p.Status = storage.PartStarted
	if err := st.db.SavePart(ctx, p); err != nil {
		st.log.Error().Err(err).Str("file", e.File).Msg("Could not record the new file")
	}
	if _, err := st.db.ModifyRecording(ctx, lr.id, func(r *storage.Recording) {
		if r.Status == storage.RecordingStarted {
			r.Status = storage.RecordingActive
		}
	}); err != nil {
		st.log.Error().Err(err).Msg("Could not mark the recording active")
	}
	if st.up != nil {
		st.up.Follow(lr.id, s.Folder(), e.File)
	}
}

// onPartComplete records the final file and hands it to the uploader.
func (st *storeRT) onPartComplete(s *recorder.Session, e recorder.FileEntry) {
	lr := st.liveRec(s)
	if lr == nil || lr.id == "" {
		return
	}
	ctx, cancel := st.dbCtx()
	defer cancel()
	p := st.partRow(lr.id, e)
	exists := fileExists(filepath.Join(s.Folder(), e.File))
	if e.Status != recorder.StatusComplete && !exists {
		p.Status = storage.PartFailedWrite
	}
	if err := st.db.SavePart(ctx, p); err != nil {
		st.log.Error().Err(err).Str("file", e.File).Msg("Could not record the finished file")
	}
	st.m.FileDone(uint64(max(e.Bytes, 0)), e.Stats.PacketsLost, e.Stats.FramesUndecrypted)
	if st.up != nil && exists {
		st.up.Finish(lr.id, s.Folder(), e.File, e.Bytes, e.SHA256)
	}
}

func (st *storeRT) onSessionClosing(s *recorder.Session) {
	lr := st.liveRec(s)
	if lr == nil || lr.id == "" {
		return
	}
	ctx, cancel := st.dbCtx()
	defer cancel()
	if _, err := st.db.ModifyRecording(ctx, lr.id, func(r *storage.Recording) { r.Status = storage.RecordingStopping }); err != nil {
		st.log.Error().Err(err).Msg("Could not mark the recording stopping")
	}
}

// onSessionEnd records the final state and forgets the live session.
func (st *storeRT) onSessionEnd(s *recorder.Session, m recorder.Manifest) {
	folder := filepath.Base(s.Folder())
	st.mu.Lock()
	lr := st.live[folder]
	delete(st.live, folder)
	st.mu.Unlock()
	if lr == nil || lr.id == "" {
		return
	}
	ctx, cancel := st.dbCtx()
	defer cancel()
	if _, err := st.db.ModifyRecording(ctx, lr.id, func(r *storage.Recording) { st.fillFromManifest(r, m, storage.RecordingSaved) }); err != nil {
		st.log.Error().Err(err).Msg("Could not record the finished recording")
	}
	if lr.startEvent != "" {
		dur := time.Duration(m.DurationMs) * time.Millisecond
		status := fmt.Sprintf("⏹ Recording ended after %s, %s in %d file(s).", formatDuration(dur), formatBytes(manifestBytes(m)), len(m.Tracks))
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			ctx, cancel := st.dbCtx()
			defer cancel()
			st.edit(ctx, lr, status)
		}()
	}
}

// fillFromManifest copies a finished manifest's totals into a recording row.
func (st *storeRT) fillFromManifest(r *storage.Recording, m recorder.Manifest, status storage.RecordingStatus) {
	r.Status = status
	if m.EndedAt != nil {
		r.EndedAt = *m.EndedAt
	} else {
		r.EndedAt = st.now()
	}
	r.DurationMs = m.DurationMs
	r.Bytes = manifestBytes(m)
	people := map[string]bool{}
	for _, p := range m.Participants {
		people[p.UserID] = true
	}
	r.Participants = len(people)
	if d := st.cfg.Recordings.ExpireAfter.D(); d > 0 {
		r.ExpiresAt = r.EndedAt.Add(d)
	}
}

func manifestBytes(m recorder.Manifest) int64 {
	var n int64
	for _, t := range m.Tracks {
		n += t.Bytes
	}
	return n
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// liveStats sums what the recordings in progress have written (metrics).
func (st *storeRT) liveStats() metrics.Live {
	st.mu.Lock()
	sessions := make([]*recorder.Session, 0, len(st.live))
	for _, lr := range st.live {
		sessions = append(sessions, lr.sess)
	}
	st.mu.Unlock()
	out := metrics.Live{Recordings: len(sessions)}
	for _, s := range sessions {
		for _, t := range s.Manifest().Tracks {
			if t.Status != recorder.StatusRecording {
				continue
			}
			out.Tracks++
			out.Bytes += uint64(max(t.Bytes, 0))
			out.PacketsLost += t.Stats.PacketsLost
			out.Undecryptable += t.Stats.FramesUndecrypted
		}
	}
	return out
}

// uploadConfirmed writes where a file went into the manifest and, with
// storage.s3.delete_local_after_upload and no delay, removes the local copy.
func (st *storeRT) uploadConfirmed(u *storage.Upload) {
	st.m.UploadsConfirmed.Inc()
	ctx, cancel := st.dbCtx()
	defer cancel()
	rec, err := st.db.Recording(ctx, u.RecordingID)
	if err != nil {
		st.log.Warn().Err(err).Msg("Upload confirmed for an unknown recording")
		return
	}
	info := recorder.Upload{
		URL: "s3://" + u.Bucket + "/" + u.Key, Bucket: u.Bucket, Key: u.Key, Bytes: u.Bytes, SHA256: u.SHA256,
		ETag: u.ETag, Confirmed: u.ConfirmedBy, UploadedAt: u.ConfirmedAt.UTC(),
	}
	if err := st.setUpload(rec.Folder, u.File, info); err != nil {
		st.log.Warn().Err(err).Str("file", u.File).Msg("Could not write the upload into the manifest")
		return
	}
	if s3c := st.cfg.Storage.S3; s3c.DeleteLocalAfterUpload && s3c.DeleteLocalDelay.D() == 0 {
		st.deleteLocalCopy(ctx, rec, u.File, info)
	}
}

// deleteLocalCopy removes a file whose uploaded copy is confirmed, saying so in the
// manifest first (so the manifest never points at a file that is neither here nor noted).
func (st *storeRT) deleteLocalCopy(ctx context.Context, rec *storage.Recording, file string, info recorder.Upload) {
	info.LocalDeleted = true
	if err := st.setUpload(rec.Folder, file, info); err != nil {
		st.log.Warn().Err(err).Str("file", file).Msg("Could not note the local deletion in the manifest; keeping the file")
		return
	}
	path := filepath.Join(st.cfg.Recordings.Dir, rec.Folder, file)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		st.log.Warn().Err(err).Str("file", file).Msg("Could not remove the local copy after the upload")
		return
	}
	parts, err := st.db.Parts(ctx, rec.ID)
	if err != nil {
		return
	}
	for _, p := range parts {
		if p.File == file {
			p.LocalDeleted = true
			if err := st.db.SavePart(ctx, p); err != nil {
				st.log.Warn().Err(err).Msg("Could not record the local deletion")
			}
		}
	}
	st.log.Info().Str("file", file).Msg("Removed the local copy; the uploaded one is confirmed")
}

// sweepLocal removes the local copies of uploaded files delete_local_delay after their
// recording ended, once the summary is out (the after-call work reads the files first).
func (st *storeRT) sweepLocal(ctx context.Context) {
	s3c := st.cfg.Storage.S3
	if st.s3 == nil || !s3c.DeleteLocalAfterUpload || s3c.DeleteLocalDelay.D() == 0 {
		return
	}
	recs, err := st.db.RecordingsWithStatus(ctx, storage.RecordingUploaded, storage.RecordingNotified)
	if err != nil {
		return
	}
	now := st.now()
	for _, r := range recs {
		if r.EndedAt.IsZero() || now.Sub(r.EndedAt) < s3c.DeleteLocalDelay.D() {
			continue
		}
		m, err := recorder.ReadManifest(filepath.Join(st.cfg.Recordings.Dir, r.Folder))
		if err != nil {
			continue
		}
		for _, tr := range m.Tracks {
			if tr.Upload != nil && !tr.Upload.LocalDeleted {
				if u, err := st.db.UploadOf(ctx, r.ID, tr.File); err == nil && u.Status == storage.UploadConfirmed {
					st.deleteLocalCopy(ctx, r, tr.File, *tr.Upload)
				}
			}
		}
	}
}

// setUpload writes upload info into a manifest: through the session while it is live,
// else into the folder's manifest file.
func (st *storeRT) setUpload(folder, file string, info recorder.Upload) error {
	// Holding mu keeps the session live (onSessionEnd waits) until its write is done: once
	// it ended, others (the after-call work) rewrite the file, and a late write from the
	// session's own copy would undo theirs.
	st.mu.Lock()
	if lr := st.live[folder]; lr != nil {
		defer st.mu.Unlock()
		return lr.sess.SetUpload(file, info)
	}
	st.mu.Unlock()
	st.manifests.Lock()
	defer st.manifests.Unlock()
	return recorder.SetUpload(filepath.Join(st.cfg.Recordings.Dir, folder), file, info)
}

// editStart replaces the start notice with its text plus a status line.
func (st *storeRT) editStart(ctx context.Context, lr *liveRec, status string) {
	text := lr.startText + "\n" + status
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: text}
	content.SetEdit(lr.startEvent)
	if _, err := st.b.client.SendMessageEvent(ctx, lr.roomID, event.EventMessage, content); err != nil {
		st.log.Debug().Err(err).Msg("Could not edit the start notice")
	}
}

// registerStartNotice remembers a recording's start notice, to edit it with progress.
func (st *storeRT) registerStartNotice(folder string, evt id.EventID, text string) {
	if st == nil || evt == "" || folder == "" {
		return
	}
	folder = filepath.Base(folder)
	st.mu.Lock()
	lr := st.live[folder]
	if lr != nil {
		lr.startEvent, lr.startText, lr.lastEdit = evt, text, st.now()
	}
	st.mu.Unlock()
	if lr != nil && lr.id != "" {
		ctx, cancel := st.dbCtx()
		defer cancel()
		if _, err := st.db.ModifyRecording(ctx, lr.id, func(r *storage.Recording) { r.StartEvent = string(evt) }); err != nil {
			st.log.Warn().Err(err).Msg("Could not store the start notice")
		}
	}
}

// run starts the background work: limits, progress edits, retention, delivery of what a
// previous run left, the HTTP server.
func (st *storeRT) run(ctx context.Context) error {
	if st.b.crypto != nil {
		prev := st.b.crypto.DecryptErrorCallback
		st.b.crypto.DecryptErrorCallback = func(evt *event.Event, err error) {
			st.m.DecryptionFailures.Inc()
			if prev != nil {
				prev(evt, err)
			}
		}
	}
	if st.s3 != nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := st.s3.Check(cctx); err != nil {
			st.log.Error().Err(err).Msg("Object storage is not usable yet; files stay on disk and uploads are retried")
		}
		cancel()
	}
	if err := st.startHTTP(); err != nil {
		return err
	}
	st.goLoop("limits", st.limitsInterval(), st.checkLimits)
	if st.cfg.Recordings.ProgressInterval.D() > 0 {
		st.goLoop("progress", st.cfg.Recordings.ProgressInterval.D()/4, st.progress)
	}
	st.goLoop("retention", st.retentionInterval(), st.retention)
	st.goLoop("renotify", renotifyEvery, st.renotify)
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		select {
		case <-st.b.ready:
		case <-st.ctx.Done():
			return
		}
		st.afterFirstSync(st.ctx)
	}()
	return nil
}

// goLoop runs fn every interval until shutdown.
func (st *storeRT) goLoop(name string, every time.Duration, fn func(ctx context.Context)) {
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-st.ctx.Done():
				return
			case <-t.C:
				func() {
					defer func() {
						if r := recover(); r != nil {
							st.log.Error().Any("panic", r).Str("loop", name).Msg("Background task panicked")
						}
					}()
					fn(st.ctx)
				}()
			}
		}
	}()
}

// shutdown stops the background work after the recordings were finalised: uploads keep
// their progress in the database and continue on the next start.
func (st *storeRT) shutdown(ctx context.Context) error {
	st.drain()
	for st.posting.n() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	st.cancel()
	var errs []error
	if st.up != nil {
		errs = append(errs, st.up.Close(ctx))
	}
	done := make(chan struct{})
	go func() {
		st.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, errors.New("storage tasks did not stop in time"))
	}
	errs = append(errs, st.db.Close())
	return errors.Join(errs...)
}

// counter counts work in flight (safe to add to while someone waits for zero).
type counter struct {
	mu    sync.Mutex
	count int
}

func (c *counter) Add(d int) {
	c.mu.Lock()
	c.count += d
	c.mu.Unlock()
}

func (c *counter) Done() { c.Add(-1) }

func (c *counter) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

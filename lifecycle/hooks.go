package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/serial"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// The recorder calls its hooks on the goroutine that changed the manifest: for a part
// starting or ending, that is the track's own goroutine, the one that writes its media.
// So the hooks here do no I/O. Each recording has a queue (a serial.Loop): a hook posts
// what the database should learn and returns, and the loop's goroutine writes the rows
// in the order the hooks were called, one recording at a time. A database that is slow or
// stuck delays the rows, never the media.
//
// What holds now, and what it costs:
//   - A part's row is queued before its file is created (OnPartStart runs first) and
//     written moments later, normally before the first flush; it is no longer guaranteed
//     to exist before the first byte. The record a crash leaves is the manifest: the
//     recorder writes a part's entry to disk within the flush interval of creating the
//     file, the recovery point media has too.
//   - A crash before the queue caught up is repaired at the next start from the
//     manifests, like any crash: Recover marks the live rows interrupted, writes a row for
//     every file the repaired manifest lists, creates the recording's row when the
//     database never had it, and marks failed_write a row whose file the manifest does not
//     list and that was never created (the row can be ahead of the manifest on disk).
//   - OnSessionStart still decides on its caller's goroutine (Start or Resume, never a
//     media goroutine) whether a recording may begin: it reads the free disk space and
//     who invited the bot into the room (cached after the first read), and takes the
//     recording's slot under the limits.
//   - OnWriteError and OnWriteResumed only count and hand the room's notice to a
//     goroutine of its own.
//   - Shutdown and the summary wait for a recording's queue to be written before they
//     read its rows.

// rowStore is where the queues write (storage.DB).
type rowStore interface {
	CreateRecording(ctx context.Context, r *storage.Recording) error
	UpdateRecording(ctx context.Context, r *storage.Recording) error
	ModifyRecording(ctx context.Context, id string, fn func(r *storage.Recording)) (*storage.Recording, error)
	SavePart(ctx context.Context, p *storage.Part) error
}

// Hooks are what the recorder calls.
func (lc *Lifecycle) Hooks() *recorder.Hooks {
	return &recorder.Hooks{
		OnSessionStart:   lc.onSessionStart,
		OnPartStart:      lc.onPartStart,
		OnPartComplete:   lc.onPartComplete,
		OnSessionClosing: lc.onSessionClosing,
		OnSessionEnd:     lc.onSessionEnd,
		OnWriteError:     lc.onWriteError,
		OnWriteResumed:   lc.onWriteResumed,
	}
}

// onSessionStart refuses a recording when the disk is (nearly) full or a limit on
// recordings at once is reached (a resumed one was admitted before), takes its slot and
// queues its row.
func (lc *Lifecycle) onSessionStart(s *recorder.Session) error {
	if min := int64(lc.cfg.Recordings.MinFreeSpace); min > 0 {
		if free, err := lc.statfs(filepath.Dir(s.Folder())); err == nil && free < min {
			return fmt.Errorf("the recordings disk has only %s free (recordings.min_free_space is %s)", config.Size(free), config.Size(min))
		}
	}
	folder := filepath.Base(s.Folder())
	roomID := id.RoomID(s.RoomID())
	lr := &liveRec{sess: s, folder: folder, roomID: roomID, kind: s.Kind(), completed: map[string]bool{}, evidence: map[string]string{}}
	ctx, cancel := lc.dbCtx()
	lr.inviter = lc.inviterOf(ctx, roomID)
	if lc.fleet != nil {
		// The room's lease is the fencing: one instance records a room's call.
		if ok, err := lc.fleet.take(ctx, roomID); err != nil || !ok {
			cancel()
			if err != nil {
				return fmt.Errorf("take the room's lease: %w", err)
			}
			return errors.New("another recorder instance records this room's call")
		}
	}
	cancel()
	// Checked and taken under one lock, so two starts cannot both take the last slot.
	lc.mu.Lock()
	if !s.Resumed() {
		if err := lc.admitLocked(roomID, lr.inviter, lr.kind); err != nil {
			lc.mu.Unlock()
			return err
		}
	}
	first := !lc.recordsInLocked(roomID)
	lc.live[folder] = lr
	q := serial.New(lc.ctx)
	if old := lc.queues[folder]; old != nil {
		// A recording resumed before its last rows were written: those go first.
		q.Post(func() {
			select {
			case <-old.Done():
			case <-lc.ctx.Done():
			}
		})
	}
	lc.queues[folder] = q
	lc.mu.Unlock()
	lc.m.RecordingsStarted.WithLabelValues(lr.kind.Label()).Inc()
	if first {
		lc.marks.want(roomID, true)
	}
	lc.wg.Add(1)
	go func() {
		defer lc.wg.Done()
		<-q.Done()
		lc.mu.Lock()
		if lc.queues[folder] == q {
			delete(lc.queues, folder)
		}
		lc.mu.Unlock()
	}()
	r := &storage.Recording{RoomID: s.RoomID(), CallID: s.CallID(), Kind: string(s.Kind()), Folder: folder, StartedAt: s.StartedAt()}
	resumed := s.Resumed()
	lc.post(q, func(ctx context.Context) {
		// Recording matters more than bookkeeping: the recording goes on while its row
		// waits for the database (rowretry.go), and so do the rows that need it.
		lc.writeRow(ctx, lr, q, "recording", func(ctx context.Context) error {
			if err := lc.rows.CreateRecording(ctx, r); err != nil {
				return fmt.Errorf("create the recording's row: %w", err)
			}
			if resumed {
				r.Status = storage.RecordingStarted
				r.EndedAt, r.ExpiresAt, r.ExpiryNoticedAt = time.Time{}, time.Time{}, time.Time{}
				if err := lc.rows.UpdateRecording(ctx, r); err != nil {
					return fmt.Errorf("mark the resumed recording: %w", err)
				}
			}
			lc.mu.Lock()
			lr.id = r.ID
			lc.mu.Unlock()
			return nil
		})
	})
	return nil
}

// errNoRecordingRow: a row that needs its recording's row, which waits for the database.
var errNoRecordingRow = errors.New("the recording's row is not written yet")

// rowOf is the recording's row id for a write that needs it.
func (lc *Lifecycle) rowOf(lr *liveRec) (string, error) {
	if id := lc.recID(lr); id != "" {
		return id, nil
	}
	return "", errNoRecordingRow
}

// liveRec returns the live recording of a session and its queue (nil when the session is
// not followed).
func (lc *Lifecycle) liveRec(s *recorder.Session) (*liveRec, *serial.Loop) {
	folder := filepath.Base(s.Folder())
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lr := lc.live[folder]
	if lr == nil {
		return nil, nil
	}
	return lr, lc.queues[folder]
}

// recID is a live recording's row id ("" until the row exists).
func (lc *Lifecycle) recID(lr *liveRec) string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lr.id
}

// onPartStart queues the part's row and following its file for the upload.
func (lc *Lifecycle) onPartStart(s *recorder.Session, e recorder.FileEntry) {
	lr, q := lc.liveRec(s)
	if lr == nil || q == nil {
		return
	}
	folder := s.Folder()
	lc.post(q, func(ctx context.Context) {
		recID := lc.recID(lr)
		p := partRow(recID, e)
		p.Status = storage.PartStarted
		lc.writePartRow(ctx, lr, q, p, "record the new file", func(id string) {
			if lc.up != nil {
				lc.up.Follow(id, folder, e.File)
			}
		})
		lc.writeRow(ctx, lr, q, "recording:active", func(ctx context.Context) error {
			id, err := lc.rowOf(lr)
			if err != nil {
				return err
			}
			if _, err := lc.rows.ModifyRecording(ctx, id, func(r *storage.Recording) {
				if r.Status == storage.RecordingStarted {
					r.Status = storage.RecordingActive
				}
			}); err != nil {
				return fmt.Errorf("mark the recording active: %w", err)
			}
			return nil
		})
	})
}

// onPartComplete counts the file and queues its final row and its upload.
func (lc *Lifecycle) onPartComplete(s *recorder.Session, e recorder.FileEntry) {
	lc.m.FileDone(uint64(max(e.Bytes, 0)), e.Stats.PacketsLost, e.Stats.FramesUndecrypted)
	lr, q := lc.liveRec(s)
	if lr == nil || q == nil {
		return
	}
	folder := s.Folder()
	lc.post(q, func(ctx context.Context) {
		lc.mu.Lock()
		recID := lr.id
		lr.completed[e.File] = true
		by, late := lr.evidence[e.File]
		delete(lr.evidence, e.File)
		lc.mu.Unlock()
		if late {
			lc.applyEvidence(filepath.Base(folder), e.File, by)
		}
		p := partRow(recID, e)
		exists := fileExists(filepath.Join(folder, e.File))
		if e.Status != recorder.StatusComplete && !exists {
			p.Status = storage.PartFailedWrite
		}
		// Replaces the file's start row if that one still waits for the database.
		lc.writePartRow(ctx, lr, q, p, "record the finished file", func(id string) {
			if lc.up != nil && exists {
				lc.up.Finish(id, folder, e.File, e.Bytes, e.SHA256)
			}
		})
	})
}

// writePartRow queues a file's row, which replaces one of the same file that still waits
// for the database, and runs then (the file's upload step) with its recording's id: at
// once when that row is known, else once the file's row is written (the recording's own
// row was late, so the upload starts from here).
func (lc *Lifecycle) writePartRow(ctx context.Context, lr *liveRec, q *serial.Loop, p *storage.Part, what string, then func(recID string)) {
	recID := p.RecordingID
	late := recID == ""
	lc.writeRow(ctx, lr, q, "part:"+p.File, func(ctx context.Context) error {
		id, err := lc.rowOf(lr)
		if err != nil {
			return err
		}
		p.RecordingID = id
		if err := lc.rows.SavePart(ctx, p); err != nil {
			return fmt.Errorf("%s %s: %w", what, p.File, err)
		}
		if late {
			then(id)
		}
		return nil
	})
	if !late {
		then(recID)
	}
}

func (lc *Lifecycle) onSessionClosing(s *recorder.Session) {
	lr, q := lc.liveRec(s)
	if lr == nil || q == nil {
		return
	}
	lc.post(q, func(ctx context.Context) {
		lc.writeRow(ctx, lr, q, "recording:stopping", func(ctx context.Context) error {
			if lc.handedOver(lr) {
				return nil
			}
			id, err := lc.rowOf(lr)
			if err != nil {
				return err
			}
			if _, err := lc.rows.ModifyRecording(ctx, id, func(r *storage.Recording) { r.Status = storage.RecordingStopping }); err != nil {
				return fmt.Errorf("mark the recording stopping: %w", err)
			}
			return nil
		})
	})
}

// onSessionEnd forgets the live session and queues its final state, the last of its
// rows: saved, or paused for a session a clean stop paused (recorder.Session.Pause: its
// manifest says interrupted), which keeps the room's recording mark for the next start.
func (lc *Lifecycle) onSessionEnd(s *recorder.Session, m recorder.Manifest) {
	folder := filepath.Base(s.Folder())
	paused := m.Status == recorder.StatusInterrupted
	lc.mu.Lock()
	lr := lc.live[folder]
	delete(lc.live, folder)
	q := lc.queues[folder]
	last := lr != nil && !lc.recordsInLocked(lr.roomID)
	lc.mu.Unlock()
	if lr == nil || q == nil {
		return
	}
	kind := lr.kind.Label()
	lc.m.RecordingsStopped.WithLabelValues(string(lc.stopReasonOf(lr, m)), kind).Inc()
	lc.m.RecordingDuration.WithLabelValues(kind).Observe(float64(m.DurationMs) / 1000)
	if last && !paused {
		lc.marks.want(lr.roomID, false)
	}
	if paused && lc.fleet != nil {
		// Handed over at the end of the clean stop (adopt.go): the room stays this
		// instance's until its files are uploaded.
		lc.mu.Lock()
		lc.pausedHere = append(lc.pausedHere, folder)
		lc.mu.Unlock()
	} else if last && lc.fleet != nil {
		lc.wg.Add(1)
		go func() {
			defer lc.wg.Done()
			ctx, cancel := lc.dbCtx()
			defer cancel()
			lc.fleet.release(ctx, lr.roomID)
		}()
	}
	status := storage.RecordingSaved
	if paused {
		status = storage.RecordingPaused
	}
	lc.post(q, func(ctx context.Context) {
		// A recording handed over while it was written here goes on elsewhere: its row
		// is the taker's (the files' rows stay this instance's to finish).
		lc.writeRow(ctx, lr, q, "recording:end", func(ctx context.Context) error {
			if lc.handedOver(lr) {
				return nil
			}
			id, err := lc.rowOf(lr)
			if err != nil {
				return err
			}
			if _, err := lc.rows.ModifyRecording(ctx, id, func(r *storage.Recording) {
				lc.fillFromManifest(r, m, status)
				if paused {
					r.Interruptions++
				}
			}); err != nil {
				return fmt.Errorf("record the finished recording: %w", err)
			}
			return nil
		})
		// The queue's last write: what still waits for the database is written now or
		// never (the queue takes no retry after this).
		lc.drainRows(lr)
	})
	q.Close()
	lc.mu.Lock()
	evt, text, mentions := lr.startEvent, lr.startText, lr.startMentions
	lc.mu.Unlock()
	if evt != "" && !paused {
		status := endedLine(m)
		lc.wg.Add(1)
		go func() {
			defer lc.wg.Done()
			ctx, cancel := lc.dbCtx()
			defer cancel()
			lc.chat.Edit(ctx, lr.roomID, evt, text+"\n"+status, mentions...)
		}()
	}
}

// flushRows waits until the rows queued for a recording (folder name) are written.
func (lc *Lifecycle) flushRows(ctx context.Context, folder string) {
	lc.mu.Lock()
	q := lc.queues[folder]
	lc.mu.Unlock()
	if q == nil {
		return
	}
	_ = q.Flush(ctx)
	select {
	case <-q.Done(): // the recording's last rows are written: forget its queue now
		lc.mu.Lock()
		if lc.queues[folder] == q {
			delete(lc.queues, folder)
		}
		lc.mu.Unlock()
	default:
	}
}

// waitQueues waits until every queue has written what it holds.
func (lc *Lifecycle) waitQueues(ctx context.Context) error {
	lc.mu.Lock()
	qs := make([]*serial.Loop, 0, len(lc.queues))
	for _, q := range lc.queues {
		qs = append(qs, q)
	}
	lc.mu.Unlock()
	for _, q := range qs {
		if err := q.Flush(ctx); err != nil {
			return fmt.Errorf("the state database did not take the last rows in time: %w", err)
		}
	}
	return nil
}

// Started remembers a recording's start notice, to edit it with progress: its text and
// the users it mentions, which the edits keep.
func (lc *Lifecycle) Started(folder string, evt id.EventID, text string, mentions ...id.UserID) {
	if evt == "" || folder == "" {
		return
	}
	folder = filepath.Base(folder)
	lc.mu.Lock()
	lr := lc.live[folder]
	q := lc.queues[folder]
	if lr != nil {
		lr.startEvent, lr.startText, lr.startMentions, lr.lastEdit = evt, text, mentions, lc.now()
	}
	lc.mu.Unlock()
	if lr == nil || q == nil {
		return
	}
	lc.post(q, func(ctx context.Context) {
		lc.writeRow(ctx, lr, q, "recording:start_event", func(ctx context.Context) error {
			id, err := lc.rowOf(lr)
			if err != nil {
				return err
			}
			if _, err := lc.rows.ModifyRecording(ctx, id, func(r *storage.Recording) { r.StartEvent = string(evt) }); err != nil {
				return fmt.Errorf("store the start notice: %w", err)
			}
			return nil
		})
	})
}

// post puts a row write on a recording's queue, with a bounded context.
func (lc *Lifecycle) post(q *serial.Loop, op func(ctx context.Context)) {
	q.Post(func() {
		ctx, cancel := lc.dbCtx()
		defer cancel()
		op(ctx)
	})
}

// partRow is a file's row as its manifest entry says.
func partRow(recID string, e recorder.FileEntry) *storage.Part {
	p := &storage.Part{
		RecordingID: recID, File: e.File, Track: e.Track, Part: e.Part, UserID: e.UserID, DeviceID: e.DeviceID,
		DisplayName: e.DisplayName, Kind: e.Kind, Codec: e.Codec, Source: e.Source, StartedAt: e.StartedAt,
		StartMs: e.StartOffsetMs, DurationMs: e.DurationMs, Bytes: e.Bytes, SHA256: e.SHA256, EndReason: e.EndReason,
		Status: partStatus(e.Status),
	}
	if e.EndedAt != nil {
		p.EndedAt = *e.EndedAt
	}
	if e.Upload != nil && e.Upload.LocalDeleted {
		p.LocalDeleted = true
	}
	return p
}

// partStatus is the row status of a manifest entry's status.
func partStatus(s string) storage.PartStatus {
	switch s {
	case recorder.StatusRecording:
		return storage.PartActive
	case recorder.StatusComplete:
		return storage.PartSaved
	default:
		return storage.PartInterrupted
	}
}

// fillFromManifest copies a finished manifest's totals into a recording row.
func (lc *Lifecycle) fillFromManifest(r *storage.Recording, m recorder.Manifest, status storage.RecordingStatus) {
	r.Status = status
	if m.EndedAt != nil {
		r.EndedAt = *m.EndedAt
	} else {
		r.EndedAt = lc.now()
	}
	r.DurationMs = m.DurationMs
	r.Bytes = manifestBytes(m)
	people := map[string]bool{}
	for _, p := range m.Participants {
		people[p.UserID] = true
	}
	r.Participants = len(people)
	r.ExpiresAt = time.Time{}
	if d := lc.cfg.Recordings.ExpireAfter.D(); d > 0 && status != storage.RecordingPaused {
		r.ExpiresAt = r.EndedAt.Add(d) // a paused recording is not over: nothing expires yet
	}
}

// recordsInLocked reports whether a recording runs in room (lc.mu held).
func (lc *Lifecycle) recordsInLocked(room id.RoomID) bool {
	for _, lr := range lc.live {
		if lr.roomID == room {
			return true
		}
	}
	return false
}

func manifestBytes(m recorder.Manifest) int64 {
	var n int64
	for _, t := range m.Tracks {
		n += t.Bytes
	}
	return n
}

package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/ctxtime"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// A clean stop of one instance of a fleet hands its recordings over without a gap
// (issue 17): before the calls are left, the stopping instance stores each recording's
// manifest in object storage and hands the room's lease over (storage.HandOverLease);
// another instance takes the room at once (adopt.go), joins the call with its own
// device and writes new parts in the same folder. The stopping instance goes on
// recording until the taker's parts of every track it records are in the database (a
// part's row is written with its first frame), then pauses as before. The two
// instances' files overlap by the seconds of that wait; the taker's manifest says so:
// the resume's interrupted_at (the stopping instance's last write) is after its
// resumed_at. The stopping instance's last parts reach the taker's manifest through
// their rows (partsFromElsewhere) when the recording ends.

const (
	// handOverWaitMax bounds how long a stopping instance records on, waiting for the
	// taker: about a join of a call on a loaded machine.
	handOverWaitMax = 25 * time.Second
	// handOverReserve is the part of the shutdown's time left for pausing the recordings
	// and uploading their files after the wait.
	handOverReserve = 12 * time.Second
	handOverPoll    = 250 * time.Millisecond
	// handOverMargin is how long the stopping instance records on once the taker
	// records: the two place their parts on the timeline each from its own clock and
	// reports, and a first try overlapped by only 80 ms.
	handOverMargin = time.Second
)

// handing is a room handed over while this instance still records there.
type handing struct {
	room id.RoomID
	recs []*liveRec
	at   time.Time
}

// HandOverLive is the first step of a clean stop on a shared database, before the calls
// are left: when another instance runs, it hands the rooms where this one records group
// calls over to it and returns once the taker records every track (or after a bound).
// The recordings then pause as before (their files are completed and uploaded) and the
// taker has gone on from before they did. Without another instance, or with SQLite, it
// does nothing: the recordings pause and are handed over at the end (handOver).
func (lc *Lifecycle) HandOverLive(ctx context.Context) {
	f := lc.fleet
	if f == nil {
		return
	}
	lc.shuttingDown.Store(true)
	// This instance is leaving: the others no longer count it as running (two that stop
	// at once do not hand their calls to each other).
	if lc.keeper != nil {
		lc.keeper.Stop()
		if _, err := lc.db.HandOverLease(ctx, storage.InstanceResource(lc.instance), f.owner); err != nil {
			lc.log.Warn().Err(err).Msg("Could not tell the other instances that this one stops")
		}
	}
	if n, err := lc.db.OthersLive(ctx, storage.InstanceResource(""), f.owner); err != nil || n == 0 {
		if err != nil {
			lc.log.Warn().Err(err).Msg("Could not see whether another instance runs; the recordings pause and are handed over afterwards")
		}
		return
	}
	rooms := f.handOverRooms(ctx)
	if len(rooms) == 0 {
		return
	}
	wait := handOverWaitMax
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)-handOverReserve)
	}
	lc.log.Info().Int("rooms", len(rooms)).Dur("wait_max", wait).Msg("Handing the recordings over to another instance; recording on until it records them")
	deadline := time.Now().Add(wait)
	pending := rooms
	for i := 1; len(pending) > 0 && time.Now().Before(deadline) && ctxtime.Sleep(ctx, handOverPoll) == nil; i++ {
		if i%4 == 0 {
			// The others may be stopping too: nobody will take the rooms.
			if n, err := lc.db.OthersLive(ctx, storage.InstanceResource(""), f.owner); err == nil && n == 0 {
				break
			}
		}
		var still []*handing
		for _, h := range pending {
			if f.takerRecords(ctx, h) {
				lc.log.Info().Stringer("room_id", h.room).Dur("overlap", time.Since(h.at)).
					Msg("The other instance records the room's call; stopping here")
				continue
			}
			still = append(still, h)
		}
		pending = still
	}
	for _, h := range pending {
		f.handOverLate(ctx, h)
	}
	_ = ctxtime.Sleep(ctx, handOverMargin)
}

// handOverRooms hands over the lease of every room where this instance records only
// group calls (a 1:1 call cannot move), after storing their manifests' copies, and
// returns them.
func (f *fleet) handOverRooms(ctx context.Context) []*handing {
	lc := f.lc
	if lc.s3 == nil {
		return nil
	}
	byRoom := map[id.RoomID][]*liveRec{}
	oneToOne := map[id.RoomID]bool{}
	lc.mu.Lock()
	for _, lr := range lc.live {
		if lr.kind.OneToOne() || lr.sess == nil || lr.id == "" {
			oneToOne[lr.roomID] = true // not movable (or not written down yet): paused as before
			continue
		}
		byRoom[lr.roomID] = append(byRoom[lr.roomID], lr)
	}
	lc.mu.Unlock()
	var out []*handing
	for room, recs := range byRoom {
		if oneToOne[room] {
			continue
		}
		f.mu.Lock()
		rl := f.rooms[room]
		f.mu.Unlock()
		if rl == nil {
			continue
		}
		// From the copies to marking them handed, no snapshot stores one (copyMu): one in
		// flight ends first, one after sees them handed.
		f.copyMu.Lock()
		stored := true
		for _, lr := range recs {
			// Stored even when the last snapshot stored the same: the taker starts from it.
			if err := f.storeCopy(ctx, lr.folder, lr.sess.Manifest(), false); err != nil {
				lc.log.Warn().Err(err).Str("folder", lr.folder).Msg("Could not store the manifest for the other instances; the recording pauses here and is handed over afterwards")
				stored = false
			}
		}
		if !stored {
			f.copyMu.Unlock()
			continue
		}
		f.takeMu.Lock()
		f.mu.Lock()
		if f.rooms[room] == rl {
			delete(f.rooms, room)
		}
		f.mu.Unlock()
		f.takeMu.Unlock()
		rl.k.Stop()
		// No snapshot may overwrite the taker's copy from here on.
		f.setHanded(recs, true)
		f.copyMu.Unlock()
		if _, err := lc.db.HandOverLease(ctx, storage.WatchResource(string(room)), f.owner); err != nil {
			lc.log.Warn().Err(err).Stringer("room_id", room).Msg("Could not hand the room over; its recordings pause here")
			f.unhand(ctx, room, recs)
			continue
		}
		lc.log.Info().Stringer("room_id", room).Msg("Handed the room over; recording on until the other instance records it")
		out = append(out, &handing{room: room, recs: recs, at: time.Now()})
	}
	return out
}

// takerRecords reports whether another instance took h's room and writes a part of every
// track this instance records there: the room's lease, then the taker's part rows, which
// it writes with a part's first frame.
func (f *fleet) takerRecords(ctx context.Context, h *handing) bool {
	lc := f.lc
	// The lease first: with no track being written (nobody sends media yet) there is no
	// part row to wait for, and the room must not be left to nobody.
	if l, err := lc.db.Lease(ctx, storage.WatchResource(string(h.room))); err != nil || l.Owner == f.owner {
		return false
	}
	for _, lr := range h.recs {
		recID := lc.recID(lr)
		// The rows first, then the manifest: a row of this instance's own is then of a
		// file its manifest lists.
		parts, err := lc.db.Parts(ctx, recID)
		if err != nil {
			return false
		}
		m := lr.sess.Manifest()
		mine := map[string]bool{}
		want := map[trackKey]bool{}
		for _, t := range m.Tracks {
			mine[t.File] = true
			if t.Status == recorder.StatusRecording {
				want[trackKey{t.UserID, t.Kind, t.Source}] = true
			}
		}
		for _, p := range parts {
			if !mine[p.File] && (p.Status == storage.PartStarted || p.Status == storage.PartActive) {
				delete(want, trackKey{p.UserID, p.Kind, p.Source})
			}
		}
		if len(want) > 0 {
			return false
		}
	}
	return true
}

type trackKey struct{ user, kind, source string }

// handOverLate is a room whose taker did not record every track in time: when nobody
// took the room, this instance takes it back and its recordings pause and are handed
// over at the end as without a taker (handOver); otherwise the taker has it, and the
// recordings here pause now.
func (f *fleet) handOverLate(ctx context.Context, h *handing) {
	lc := f.lc
	l, err := lc.db.Lease(ctx, storage.WatchResource(string(h.room)))
	if err == nil && l.Owner == f.owner {
		lc.log.Warn().Stringer("room_id", h.room).Msg("No other instance took the room in time; its recordings pause and are handed over afterwards")
		f.unhand(ctx, h.room, h.recs)
		return
	}
	lc.log.Warn().Stringer("room_id", h.room).Msg("The other instance took the room but does not record every track yet; stopping here anyway")
}

// unhand takes a room back that was handed over but not taken.
func (f *fleet) unhand(ctx context.Context, room id.RoomID, recs []*liveRec) {
	lc := f.lc
	if ok, err := f.take(ctx, room); err != nil || !ok {
		lc.log.Warn().Err(err).Stringer("room_id", room).Msg("Could not take the room back; another instance takes it")
		return
	}
	f.setHanded(recs, false)
}

// setHanded notes the folders of recordings handed over while written here: no snapshot
// and no manifest stored at the end (handOver) overwrites the taker's copy, and their
// recordings' rows are the taker's (hooks.go). It outlives the live recording: the
// paused folder is handed over after its session ended.
func (f *fleet) setHanded(recs []*liveRec, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, lr := range recs {
		if on {
			f.handed[lr.folder] = true
		} else {
			delete(f.handed, lr.folder)
		}
	}
}

// wasHanded reports whether folder's recording was handed over while written here.
func (f *fleet) wasHanded(folder string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.handed[folder]
}

// handedOver reports whether lr's recording was handed to another instance while this
// one wrote it.
func (lc *Lifecycle) handedOver(lr *liveRec) bool {
	return lc.fleet != nil && lc.fleet.wasHanded(lr.folder)
}

// partsFromElsewhere writes into the manifest of a recording taken over from another
// instance what that instance finished after the take-over: the files it went on writing
// during a hand-over (their rows say saved, with their length and checksum, where the
// manifest's copy says interrupted). The resume they overlap then says where the other
// instance stopped writing (interrupted_at, after resumed_at).
func (lc *Lifecycle) partsFromElsewhere(ctx context.Context, rec *storage.Recording) {
	if lc.fleet == nil {
		return
	}
	parts, err := lc.db.Parts(ctx, rec.ID)
	if err != nil {
		return
	}
	rows := map[string]*storage.Part{}
	for _, p := range parts {
		rows[p.File] = p
	}
	dir := filepath.Join(lc.cfg.Recordings.Dir, rec.Folder)
	lc.manifests.Lock()
	defer lc.manifests.Unlock()
	m, err := recorder.ReadManifest(dir)
	if err != nil {
		return
	}
	var last time.Time
	for i := range m.Tracks {
		t := &m.Tracks[i]
		p := rows[t.File]
		if t.Status != recorder.StatusInterrupted || p == nil || p.Status != storage.PartSaved || p.DurationMs < t.DurationMs {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, t.File)); err == nil {
			continue // written here: this instance's entry is right
		}
		t.Status, t.DurationMs, t.Bytes, t.SHA256, t.EndReason = recorder.StatusComplete, p.DurationMs, p.Bytes, p.SHA256, p.EndReason
		if !p.EndedAt.IsZero() {
			end := p.EndedAt.UTC()
			t.EndedAt = &end
			if end.After(last) {
				last = end
			}
		}
	}
	if last.IsZero() {
		return
	}
	for i := len(m.Resumes) - 1; i >= 0; i-- {
		r := &m.Resumes[i]
		if r.PreviousInstance != "" && r.InterruptedAt.Before(last) {
			r.InterruptedAt = last
			break
		}
	}
	if err := recorder.WriteJSONAtomic(filepath.Join(dir, recorder.ManifestFile), m); err != nil {
		lc.log.Warn().Err(err).Str("folder", rec.Folder).Msg("Could not write the other instance's last files into the manifest")
	}
}

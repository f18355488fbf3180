package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/ctxtime"
	"github.com/matrix-recorder/matrix-recorder/lifecycle/upload"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// Moving recordings between the instances of a fleet (fleet.go).
//
// While it records, the owner of a room keeps a copy of each recording's manifest in
// object storage (snapshot, every few seconds) next to the files, which the uploader sends
// as they grow and, with recordings.split_after, part by part. When the owner stops
// renewing the room's lease (killed, host gone) or hands the room over at a clean stop
// (it pauses the recordings, waits for their uploads, stores the paused manifest and lets
// the lease run out at once), another instance adopts the recordings: it wins the room
// (least loaded first), fetches the manifest into a folder of the same name in its own
// recordings dir and resumes there, with its own device, in new parts on the same
// timeline under the same prefix. The manifest's resumes[] names both instances. A legacy
// 1:1 call cannot move (its peer connection was in the lost process): it ends with what
// was uploaded.

// maxManifestBytes bounds a manifest fetched from object storage.
const maxManifestBytes = 16 << 20

// snapshot stores the manifests of this instance's recordings in object storage, for an
// instance that has to take them over.
func (f *fleet) snapshot(ctx context.Context) {
	lc := f.lc
	if lc.s3 == nil {
		return
	}
	lc.mu.Lock()
	sessions := make(map[string]*recorder.Session, len(lc.live))
	live := make(map[string]bool, len(lc.live))
	for folder, lr := range lc.live {
		sessions[folder] = lr.sess
		live[folder] = true
	}
	lc.mu.Unlock()
	f.copies.keepOnly(live)
	for folder, s := range sessions {
		if s != nil {
			f.snapshotOne(ctx, folder, s)
		}
	}
}

// snapshotOne stores the copy of one live recording's manifest, unless it was handed
// over (the copy is the taker's then), under copyMu: a hand-over waits for it.
func (f *fleet) snapshotOne(ctx context.Context, folder string, s *recorder.Session) {
	f.copyMu.Lock()
	defer f.copyMu.Unlock()
	if f.wasHanded(folder) {
		return // the manifest's copy is the taker's now (handover.go)
	}
	m := s.Manifest()
	if m.Status != recorder.StatusRecording {
		return // ending: its final manifest follows
	}
	if err := f.storeCopy(ctx, folder, m, true); err != nil {
		f.lc.log.Warn().Err(err).Str("folder", folder).Msg("Could not store the manifest's copy for the other instances")
	}
}

// storeCopy stores m as the copy of folder's manifest in object storage, which an
// instance that takes the recording over continues from; onlyChanged leaves out a
// manifest that is the copy stored last.
func (f *fleet) storeCopy(ctx context.Context, folder string, m recorder.Manifest, onlyChanged bool) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the manifest: %w", err)
	}
	sum := sha256.Sum256(data)
	if onlyChanged && !f.copies.changed(folder, sum) {
		return nil // the copy in object storage is this
	}
	if _, err := f.lc.s3.Put(ctx, f.lc.s3.Key(folder, recorder.ManifestFile), data); err != nil {
		return fmt.Errorf("store the manifest's copy: %w", err)
	}
	f.copies.stored(folder, sum)
	return nil
}

// manifestCopies remembers what snapshot last stored of each live recording's manifest:
// a manifest changes when a file, a participant or a marker comes and when its durations
// are refreshed (every few seconds while a track runs), not at every snapshot, and an
// unchanged one is not stored again.
type manifestCopies struct {
	mu   sync.Mutex
	last map[string][sha256.Size]byte
}

// changed reports whether sum differs from what was stored last for folder.
func (c *manifestCopies) changed(folder string, sum [sha256.Size]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	last, ok := c.last[folder]
	return !ok || last != sum
}

// stored notes what was stored for folder.
func (c *manifestCopies) stored(folder string, sum [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string][sha256.Size]byte{}
	}
	c.last[folder] = sum
}

// keepOnly forgets the folders that are not live any more (a recording that comes back
// here is stored again).
func (c *manifestCopies) keepOnly(live map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for folder := range c.last {
		if !live[folder] {
			delete(c.last, folder)
		}
	}
}

// adopt looks for rooms whose owner stopped renewing their lease (or handed them over)
// and takes their recordings over.
//
// An instance that is stopping takes nothing: two instances stopped at once would hand
// their rooms to each other otherwise, and both would pause them.
func (f *fleet) adopt(ctx context.Context) {
	lc := f.lc
	if lc.shuttingDown.Load() {
		return
	}
	expired, err := lc.db.ExpiredLeases(ctx, storage.WatchResource(""))
	up := f.dbUpFor(err)
	if err != nil {
		lc.log.Warn().Err(err).Msg("Could not look for recordings to take over")
		return
	}
	expired = f.takeable(expired, up)
	if len(expired) == 0 {
		return
	}
	wait := f.adoptWait(ctx, expired)
	// The rooms are taken over side by side (a few at a time): joining a call takes
	// seconds, and one after the other the last of a dead instance's calls would wait for
	// all the others (13 s for the fourth of four in the fleet bench).
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxAdoptAtOnce)
	for _, l := range expired {
		if ctx.Err() != nil {
			break
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			f.adoptRoom(ctx, l, wait)
		}()
	}
	wg.Wait()
}

// dbUpFor notes whether the database answered the look for rooms to take over (err) and
// returns how long it has answered without a break.
func (f *fleet) dbUpFor(err error) time.Duration {
	now := time.Now()
	f.dbMu.Lock()
	defer f.dbMu.Unlock()
	switch {
	case err != nil:
		f.dbUpSince = time.Time{}
		return 0
	case f.dbUpSince.IsZero():
		f.dbUpSince = now
	}
	return now.Sub(f.dbUpSince)
}

// takeable leaves out of expired the leases that ran out while this instance could not
// reach the database either (up: how long it has reached it since): a database that was
// down or restarted for everyone stopped every holder's renewals, and a holder that still
// records renews within a third of the lease once the database is back. Taking its rooms
// then would end its recordings and start them again here: two summaries for one call.
// A lease handed over (a clean stop) is taken at once.
func (f *fleet) takeable(expired []*storage.Lease, up time.Duration) []*storage.Lease {
	if up >= f.ttl {
		return expired
	}
	var out []*storage.Lease
	for _, l := range expired {
		if l.HandedOver() {
			out = append(out, l)
		}
	}
	return out
}

// adoptWait is how long this instance waits before it takes over rooms whose owner
// stopped (expired): a little per recording it runs (adoptPerRecording), so that the
// least loaded of several instances wins; nothing when no instance but those owners and
// this one runs; long when it is at its limit of group recordings.
func (f *fleet) adoptWait(ctx context.Context, expired []*storage.Lease) time.Duration {
	lc := f.lc
	d, full := f.busyWait(false, f.adoptPer, f.adoptMax)
	if full || d == 0 {
		return d
	}
	owners, err := lc.db.LiveOwners(ctx, storage.InstanceResource(""))
	if err == nil {
		gone := map[string]bool{f.owner: true}
		for _, l := range expired {
			gone[l.Owner] = true
		}
		others := 0
		for _, o := range owners {
			if !gone[o] {
				others++
			}
		}
		if others == 0 {
			return 0
		}
	}
	return d
}

// maxAdoptAtOnce bounds the rooms one instance takes over at the same time.
const maxAdoptAtOnce = 8

// adoptRoom takes over the recordings of the room whose lease l ran out (or was handed
// over), if this instance wins the room after waiting wait.
func (f *fleet) adoptRoom(ctx context.Context, l *storage.Lease, wait time.Duration) {
	lc := f.lc
	room := id.RoomID(strings.TrimPrefix(l.Resource, storage.WatchResource("")))
	if ctxtime.Sleep(ctx, wait) != nil || lc.shuttingDown.Load() {
		return // began to stop while it waited
	}
	ok, err := f.take(ctx, room)
	if err != nil || !ok {
		return
	}
	previous, _, _ := strings.Cut(l.Owner, "/")
	if previous == lc.instance {
		previous = "" // this instance's own earlier process
	}
	// Listed now that the room is this instance's.
	recs, err := f.orphans(ctx, room)
	if err != nil {
		lc.log.Warn().Err(err).Stringer("room_id", room).Msg("Could not list the room's recordings")
	}
	resumed := false
	for _, r := range recs {
		resumed = f.adoptRecording(ctx, r, previous, l.RenewedAt, l.HandedOver()) || resumed
	}
	if !resumed {
		lc.ReleaseRoom(ctx, room)
	}
}

// orphans lists a room's recordings that are still being written or paused, by another
// instance (their folder is not in this instance's recordings dir).
func (f *fleet) orphans(ctx context.Context, room id.RoomID) ([]*storage.Recording, error) {
	recs, err := f.lc.db.RecordingsInRoom(ctx, string(room), 20)
	if err != nil {
		return nil, err
	}
	var out []*storage.Recording
	f.lc.mu.Lock()
	defer f.lc.mu.Unlock()
	for _, r := range recs {
		if !r.Status.Live() && r.Status != storage.RecordingPaused {
			continue
		}
		if f.lc.live[r.Folder] != nil {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// adoptRecording takes one recording over from previous (an instance id; "" unknown),
// which last renewed the room's lease at lastSeen. It reports whether the recording goes
// on here.
func (f *fleet) adoptRecording(ctx context.Context, r *storage.Recording, previous string, lastSeen time.Time, handedOver bool) bool {
	lc := f.lc
	roomID := id.RoomID(r.RoomID)
	log := lc.log.With().Str("recording", r.ID).Str("folder", r.Folder).Stringer("room_id", roomID).Str("previous_instance", previous).Logger()
	paused := r.Status == storage.RecordingPaused
	m, err := f.fetchManifest(ctx, r)
	if err != nil {
		log.Warn().Err(err).Msg("No copy of the recording's manifest in object storage; continuing from the database's record")
	}
	who := "another recorder instance"
	if previous != "" {
		who = "recorder instance " + previous
	}
	at := lastSeen
	if m.EndedAt != nil && paused {
		at = *m.EndedAt
	}
	reason := fmt.Sprintf("%s stopped at %s UTC", who, at.UTC().Format("15:04:05"))
	if paused || handedOver {
		reason = fmt.Sprintf("%s handed the recording over at %s UTC", who, at.UTC().Format("15:04:05"))
	}
	// The manifest as the other instance left it, in a folder of this instance: files
	// still being written there end where their last copy does.
	if m.EndedAt == nil || m.EndedAt.After(at) {
		m.EndedAt = &at
	}
	// Handed over while it was still written there (HandOverLive): the instance that
	// writes the files finishes their copies. A paused recording handed over at the end of
	// a clean stop (handOver) is not written any more: its files without a confirmed copy
	// are completed here, as a dead instance's are.
	stillWritten := handedOver && !paused
	var writing []string
	if !stillWritten {
		writing = f.filesBeingWritten(ctx, r, m)
	}
	for i := range m.Tracks {
		t := &m.Tracks[i]
		if t.Status == recorder.StatusRecording {
			t.Status = recorder.StatusInterrupted
			if stillWritten {
				// Still written there: its end follows in its row (partsFromElsewhere).
				t.EndReason = "written on " + who + ", which went on writing it during the hand-over"
			} else if t.Upload == nil {
				t.EndReason = "written on " + who + ", which stopped before the file's copy was complete"
			}
		}
	}
	m.Status = recorder.StatusInterrupted
	m.Interruption = reason
	folder := filepath.Join(lc.cfg.Recordings.Dir, r.Folder)
	if err := os.MkdirAll(folder, lc.cfg.Recordings.DirMode.Perm()); err != nil {
		log.Error().Err(err).Msg("Could not create the folder to continue the recording in")
		return false
	}
	lc.manifests.Lock()
	err = recorder.WriteJSONAtomic(filepath.Join(folder, recorder.ManifestFile), m)
	lc.manifests.Unlock()
	if err != nil {
		log.Error().Err(err).Msg("Could not write the recording's manifest")
		return false
	}
	if err := lc.db.SetPartsStatus(ctx, r.ID, storage.PartInterrupted, storage.PartStarted, storage.PartActive); err != nil {
		log.Warn().Err(err).Msg("Could not mark the files the other instance was writing")
	}
	log.Info().Bool("paused", paused).Msg("Taking over a recording of another instance")
	lc.m.Interrupted.Add(1)
	if recorder.Kind(r.Kind) == recorder.KindOneToOne {
		f.salvage(r, writing, who)
		f.endAdopted(ctx, r, m, "A 1:1 call cannot move to another recorder instance: "+reason+", and the call ended with it.")
		lc.endStaleCall(ctx, r, m)
		if lc.cfg.Bot.Notices {
			lc.chat.Notice(ctx, roomID, fmt.Sprintf("⚠️ The %s that recorded the call with %s stopped at %s UTC. Everything uploaded until then is saved; a 1:1 call cannot move to another instance. Call again to record more.",
				who, peerName(m), at.UTC().Format("15:04:05")), "")
		}
		return false
	}
	req := lc.resumeRequest(ctx, r, m, paused)
	rctx := recorder.WithResumeBy(ctx, lc.instance, previous)
	ok, why := lc.calls.Resume(rctx, req)
	// After the resume (which must not wait for it, and whose session owns the manifest
	// from then on), or before the recording ends here (its summary waits for it).
	f.salvage(r, writing, who)
	if ok {
		log.Info().Msg("Took the recording over")
		lc.chat.Notice(ctx, roomID, fmt.Sprintf("🔁 The %s; recorder instance %s continues the recording in the same folder: the files go on as further parts on the call's timeline.",
			reason, lc.instance), "")
		return true
	}
	log.Info().Str("why", why).Msg("The recording cannot continue; it ends where the other instance left it")
	f.endAdopted(ctx, r, m, fmt.Sprintf("Recording ended: the %s, and it could not continue: %s.", reason, why))
	return false
}

// endAdopted ends a recording taken over from another instance where that one left it,
// with its summary.
func (f *fleet) endAdopted(ctx context.Context, r *storage.Recording, m *recorder.Manifest, headline string) {
	lc := f.lc
	if err := lc.db.SetPartsStatus(ctx, r.ID, storage.PartInterrupted, storage.PartStarted, storage.PartActive); err != nil {
		lc.log.Warn().Err(err).Msg("Could not mark the recording's files")
	}
	lc.fillFromManifest(r, *m, storage.RecordingInterrupted)
	if err := lc.db.UpdateRecording(ctx, r); err != nil {
		lc.log.Error().Err(err).Str("recording", r.ID).Msg("Could not mark the recording interrupted")
	}
	lc.goDeliver(id.RoomID(r.RoomID), r.Folder, nil, headline)
}

// fetchManifest returns the copy of a recording's manifest in object storage, or one made
// from the database's record when there is none.
func (f *fleet) fetchManifest(ctx context.Context, r *storage.Recording) (*recorder.Manifest, error) {
	lc := f.lc
	made := &recorder.Manifest{
		Version: recorder.ManifestVersion, CallID: r.CallID, RoomID: r.RoomID, Kind: recorder.Kind(r.Kind),
		StartedAt: r.StartedAt, Participants: []recorder.Participant{}, Tracks: []recorder.FileEntry{},
	}
	if lc.s3 == nil {
		return made, errors.New("no object storage")
	}
	data, err := lc.s3.Get(ctx, lc.s3.Key(r.Folder, recorder.ManifestFile), maxManifestBytes)
	if err != nil {
		if s3store.IsNotFound(err) {
			return made, errors.New("the other instance stored no copy yet")
		}
		return made, err
	}
	var m recorder.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return made, fmt.Errorf("read the manifest's copy: %w", err)
	}
	if m.RoomID != r.RoomID {
		return made, errors.New("the manifest's copy is of another room")
	}
	if m.Tracks == nil {
		m.Tracks = []recorder.FileEntry{}
	}
	if m.Participants == nil {
		m.Participants = []recorder.Participant{}
	}
	return &m, nil
}

// handOver is a clean stop's hand-over of this instance's rooms (after the recordings
// paused): the paused recordings' files are uploaded and their manifests stored, then the
// leases of rooms with a paused recording run out at once, so another instance takes them
// over now; the other room leases are given back.
func (f *fleet) handOver(ctx context.Context) {
	lc := f.lc
	lc.mu.Lock()
	folders := lc.pausedHere
	lc.pausedHere = nil
	lc.mu.Unlock()
	handed := map[id.RoomID]bool{}
	// The uploads get the shutdown's time but the last seconds, which the hand-over needs.
	wctx := ctx
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(ctx, d.Add(-3*time.Second))
		defer cancel()
	}
	for _, folder := range folders {
		r, err := lc.db.RecordingByFolder(ctx, folder)
		if err != nil {
			lc.log.Warn().Err(err).Str("folder", folder).Msg("Could not find the paused recording to hand over")
			continue
		}
		f.waitUploads(wctx, r)
		if lc.s3 != nil && !f.wasHanded(folder) { // a handed one's copy is the taker's
			if err := lc.storeManifest(ctx, r.Folder); err != nil {
				lc.log.Warn().Err(err).Str("folder", folder).Msg("Could not store the paused recording's manifest for the other instances")
			}
		}
		handed[id.RoomID(r.RoomID)] = true
	}
	f.takeMu.Lock()
	f.mu.Lock()
	all := f.rooms
	f.rooms = map[id.RoomID]*roomLease{}
	f.mu.Unlock()
	f.takeMu.Unlock()
	for room, rl := range all {
		if !handed[room] {
			if err := rl.k.Release(ctx); err != nil {
				lc.log.Warn().Err(err).Stringer("room_id", room).Msg("Could not give the room's lease back; it runs out by itself")
			}
			continue
		}
		rl.k.Stop()
		// Expired now, with this instance's name on it and marked as handed over: the
		// next instance takes it over at once (takeable).
		if _, err := lc.db.HandOverLease(ctx, storage.WatchResource(string(room)), f.owner); err != nil {
			lc.log.Warn().Err(err).Stringer("room_id", room).Msg("Could not hand the room over; it runs out by itself")
			continue
		}
		lc.log.Info().Stringer("room_id", room).Msg("Handed the room's recording over to the other instances")
	}
}

// waitUploads waits (bounded by ctx) until every file of a recording that is on this
// instance's disk has its copy confirmed in object storage.
func (f *fleet) waitUploads(ctx context.Context, r *storage.Recording) {
	lc := f.lc
	if lc.up == nil {
		return
	}
	for {
		parts, err := lc.db.Parts(ctx, r.ID)
		if err != nil {
			return
		}
		pending := 0
		for _, p := range parts {
			if p.LocalDeleted || !fileExists(filepath.Join(lc.cfg.Recordings.Dir, r.Folder, p.File)) {
				continue
			}
			u, err := lc.db.UploadOf(ctx, r.ID, p.File)
			if err != nil || (u.Status != storage.UploadConfirmed && u.Status != storage.UploadFailed && !u.Status.Gone()) {
				pending++
			}
		}
		if pending == 0 {
			return
		}
		if ctxtime.Sleep(ctx, 200*time.Millisecond) != nil {
			lc.log.Warn().Int("files", pending).Str("folder", r.Folder).Msg("Handing over before every file's copy was confirmed")
			return
		}
	}
}

// storeManifest copies a finished or paused folder's manifest to object storage.
func (lc *Lifecycle) storeManifest(ctx context.Context, folder string) error {
	lc.manifests.Lock()
	data, err := os.ReadFile(filepath.Join(lc.cfg.Recordings.Dir, folder, recorder.ManifestFile))
	lc.manifests.Unlock()
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	_, err = lc.s3.Put(ctx, lc.s3.Key(folder, recorder.ManifestFile), data)
	return err
}

// copiesFromElsewhere writes into a recording's manifest the copies another instance
// confirmed (on a shared database): the files it wrote before this instance took the
// recording over, which it uploads when it comes back.
func (lc *Lifecycle) copiesFromElsewhere(ctx context.Context, rec *storage.Recording) {
	if lc.fleet == nil {
		return
	}
	lc.manifests.Lock()
	m, err := recorder.ReadManifest(filepath.Join(lc.cfg.Recordings.Dir, rec.Folder))
	lc.manifests.Unlock()
	if err != nil {
		return
	}
	for _, t := range m.Tracks {
		if t.Upload != nil {
			continue
		}
		u, err := lc.db.UploadOf(ctx, rec.ID, t.File)
		if err != nil || u.Status != storage.UploadConfirmed {
			continue
		}
		if err := lc.setUpload(rec.Folder, t.File, uploadInfo(u)); err != nil {
			lc.log.Warn().Err(err).Str("file", t.File).Msg("Could not write the copy another instance made into the manifest")
		}
	}
}

// tailEvery is how often, in a fleet, the uploader stores the tail of a growing file (the
// bytes past its last whole upload part), which an instance that takes the recording over
// completes the file's copy with if this one dies: at most about this much of each file,
// plus the flush interval, is lost with a host that never comes back. One small PUT per
// growing file per interval. Without a fleet nobody else could use the tails.
const tailEvery = 4 * time.Second

func (lc *Lifecycle) tailEvery() time.Duration {
	if lc.fleet == nil {
		return 0
	}
	return tailEvery
}

// filesBeingWritten lists the files of a recording that the instance it is taken over
// from was writing (its rows, and its manifest's copy, say so), and those an earlier
// instance that died left without a copy: their copies in object storage are the whole
// upload parts and the tail it stored, which salvage completes.
func (f *fleet) filesBeingWritten(ctx context.Context, r *storage.Recording, m *recorder.Manifest) []string {
	var files []string
	seen := map[string]bool{}
	add := func(file string) {
		if !seen[file] {
			seen[file] = true
			files = append(files, file)
		}
	}
	for _, t := range m.Tracks {
		if t.Status == recorder.StatusRecording && t.Upload == nil && t.Writer == "" {
			add(t.File)
		}
	}
	parts, err := f.lc.db.Parts(ctx, r.ID)
	if err != nil {
		f.lc.log.Warn().Err(err).Str("recording", r.ID).Msg("Could not list the files the other instance was writing")
	}
	for _, p := range parts {
		switch p.Status {
		case storage.PartStarted, storage.PartActive:
			add(p.File)
		case storage.PartInterrupted:
			// Interrupted by an earlier death (an instance that had taken the recording
			// over and died too) and still without a copy: only object storage has it.
			if p.LocalDeleted || fileExists(filepath.Join(f.lc.cfg.Recordings.Dir, r.Folder, p.File)) {
				continue
			}
			if u, err := f.lc.db.UploadOf(ctx, r.ID, p.File); err == nil && (u.Status == storage.UploadPending || u.Status == storage.UploadUploading) {
				add(p.File)
			}
		}
	}
	return files
}

// salvage completes, in the background, the copies of the files the instance who
// recorded before was writing when it died, from the upload parts and the tails it
// stored (upload.Salvage); the recording's summary waits for them like for uploads.
func (f *fleet) salvage(r *storage.Recording, files []string, who string) {
	lc := f.lc
	if lc.up == nil {
		return
	}
	folder := filepath.Join(lc.cfg.Recordings.Dir, r.Folder)
	for _, file := range files {
		lc.up.Salvage(r.ID, folder, file, func(s upload.Salvaged) { lc.salvaged(r, file, who, s) })
	}
}

// salvaged writes into a file's row and manifest entry what its completed copy holds.
func (lc *Lifecycle) salvaged(r *storage.Recording, file, who string, s upload.Salvaged) {
	if s.Upload == nil {
		return
	}
	reason := fmt.Sprintf("written on %s, which stopped; its copy in object storage was completed from what that instance had uploaded", who)
	if !s.FromTail {
		reason += " (its whole upload parts: the end of the file is missing)"
	}
	fill := func(bytes *int64, sha *string, durationMs *int64, startedAt time.Time, endedAt **time.Time, endReason *string) {
		*bytes, *sha = s.Upload.Bytes, s.Upload.SHA256
		if s.MediaMs >= 0 {
			*durationMs = s.MediaMs
			end := startedAt.Add(time.Duration(s.MediaMs) * time.Millisecond).UTC()
			*endedAt = &end
		}
		*endReason = reason
	}
	ctx, cancel := lc.dbCtx()
	defer cancel()
	if parts, err := lc.db.Parts(ctx, r.ID); err == nil {
		for _, p := range parts {
			if p.File != file {
				continue
			}
			var end *time.Time
			fill(&p.Bytes, &p.SHA256, &p.DurationMs, p.StartedAt, &end, &p.EndReason)
			if end != nil {
				p.EndedAt = *end
			}
			p.Status = storage.PartInterrupted
			if err := lc.db.SavePart(ctx, p); err != nil {
				lc.log.Warn().Err(err).Str("file", file).Msg("Could not record what the completed copy holds")
			}
		}
	}
	err := lc.updateFile(r.Folder, file, func(e *recorder.FileEntry) {
		fill(&e.Bytes, &e.SHA256, &e.DurationMs, e.StartedAt, &e.EndedAt, &e.EndReason)
		e.Status = recorder.StatusInterrupted
	})
	if err != nil {
		lc.log.Warn().Err(err).Str("file", file).Msg("Could not write what the completed copy holds into the manifest")
	}
}

// updateFile changes a file's manifest entry: through the session while it is live, else
// in the folder's manifest file.
func (lc *Lifecycle) updateFile(folder, file string, fn func(*recorder.FileEntry)) error {
	return lc.updateFileIf(folder, file, nil, fn)
}

// updateFileIf is updateFile when check (if set) accepts the entry as it is; else it
// returns check's error and writes nothing.
func (lc *Lifecycle) updateFileIf(folder, file string, check func(recorder.FileEntry) error, fn func(*recorder.FileEntry)) error {
	checked := func(m recorder.Manifest) error {
		if check == nil {
			return nil
		}
		for _, e := range m.Tracks {
			if e.File == file {
				return check(e)
			}
		}
		return nil // the update says there is no such file
	}
	// Holding mu keeps the session live (onSessionEnd waits) until its write is done: once
	// it ended, others (the after-call work) rewrite the file, and a late write from the
	// session's own copy would undo theirs.
	lc.mu.Lock()
	if lr := lc.live[folder]; lr != nil {
		defer lc.mu.Unlock()
		if err := checked(lr.sess.Manifest()); err != nil {
			return err
		}
		return lr.sess.UpdateFile(file, fn)
	}
	lc.mu.Unlock()
	lc.manifests.Lock()
	defer lc.manifests.Unlock()
	dir := filepath.Join(lc.cfg.Recordings.Dir, folder)
	if check != nil {
		m, err := recorder.ReadManifest(dir)
		if err != nil {
			return err
		}
		if err := checked(*m); err != nil {
			return err
		}
	}
	return recorder.UpdateFileIn(dir, file, fn)
}

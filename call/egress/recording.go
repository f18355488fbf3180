package egress

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/roomerr"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// Bounds of one recording.
const (
	// maxFailures: a track whose egress failed this often is left alone (and the room told).
	maxFailures = 3
	// stoppingPoll is how often the egresses are listed while a stop waits for them.
	stoppingPoll = 500 * time.Millisecond
	// closeTimeout bounds finalising the manifest.
	closeTimeout = 30 * time.Second
	// maxListed is how many ended egresses !status still lists.
	maxListed = 20
)

// egressFile is one egress and the file it writes.
type egressFile struct {
	id string
	// trackSID is the recorded track ("" for a room composite).
	trackSID string
	identity string
	user     id.UserID
	// what names it for people: "Alice's microphone", "the room".
	what      string
	kind      string // "track" or "composite"
	file      string
	key       string // object key (remote output)
	status    livekit.EgressStatus
	updatedAt int64
	requested time.Time
	activeAt  time.Time
	muted     bool // the track is muted: no media, so no start is expected
	done      bool
	optedOut  bool
	endNote   string // why it ended, for !status
}

func (f *egressFile) open() bool { return !f.done }

// person is a participant of the LiveKit room.
type person struct {
	identity string
	dev      matrixrtc.DeviceKey
	name     string
	in       bool
}

// Recording is one LiveKit room recorded with Egress for one Matrix room. A serial loop
// owns its state; webhooks, polls, opt-outs and the stop all run on it.
type Recording struct {
	b      *Backend
	t      *target
	room   id.RoomID
	sess   *recorder.Session
	folder string
	log    zerolog.Logger
	loop   *call.Loop
	ctx    context.Context
	cancel context.CancelFunc

	pollQueued atomic.Bool
	stopFast   atomic.Bool
	fast       chan struct{} // wakes the poller when a stop begins

	// Owned by the loop.
	files    map[string]*egressFile // by egress id
	order    []*egressFile
	byTrack  map[string]*egressFile // the open egress of each track
	failures map[string]int         // per track
	people   map[string]*person
	optOut   map[id.UserID]bool
	told     map[string]bool
	// joiners tells the room about people who join while it records; peopleKnown: the
	// people there at the start were seen (the start notice names them).
	joiners      *call.Joiners
	peopleKnown  bool
	emptySince   time.Time
	stopping     bool
	stopReason   string
	stopDeadline time.Time
	ended        bool

	mu   sync.Mutex
	snap call.Status
	// live counts the egresses that write media and, in tracks mode, those present who
	// opted out (call.RecordingState), as of the snapshot.
	live     int
	finished chan struct{} // closed once the manifest is final
	done     chan struct{} // closed when the recording ended (on its own or stopped)
	doneOnce sync.Once
	result   recorder.Manifest
	why      string
	err      error
}

var _ call.Recording = (*Recording)(nil)

func newRecording(b *Backend, t *target, room id.RoomID, sess *recorder.Session) *Recording {
	ctx, cancel := context.WithCancel(b.ctx)
	r := &Recording{
		b: b, t: t, room: room, sess: sess, folder: filepath.Base(sess.Folder()), ctx: ctx, cancel: cancel,
		log: b.log.With().Stringer("room_id", room).Str("deployment", t.dep.Name).Str("livekit_room", t.room).
			Str("folder", filepath.Base(sess.Folder())).Logger(),
		files: map[string]*egressFile{}, byTrack: map[string]*egressFile{}, failures: map[string]int{},
		people: map[string]*person{}, optOut: map[id.UserID]bool{}, told: map[string]bool{},
		finished: make(chan struct{}), done: make(chan struct{}), fast: make(chan struct{}, 1),
	}
	r.loop = call.NewLoop(ctx)
	r.joiners = call.NewJoiners(ctx, b.mx, room, b.opts.CommandPrefix, t.mode != config.EgressTracks)
	r.publish()
	return r
}

// begin starts the first egresses: the composite, or one per track published now (those
// that have one already, taken over after a restart, keep it). Then the loop polls.
// resumed: a room that is gone is no error (the recording ends after the grace time).
func (r *Recording) begin(ctx context.Context, resumed bool) error {
	errc := make(chan error, 1)
	r.loop.Post(func() {
		if r.t.mode == config.EgressTracks {
			parts, err := r.t.dep.api.Participants(ctx, r.t.room)
			if err != nil {
				if errors.Is(err, ErrNoRoom) && resumed {
					r.publish()
					errc <- nil
					return
				}
				if errors.Is(err, ErrNoRoom) {
					errc <- usererr.Error{Msg: fmt.Sprintf("%s is empty: Egress can only record while someone is in it.", capitalize(r.t.what))}
					return
				}
				errc <- errors.New(apiError(err))
				return
			}
			r.people = map[string]*person{}
			r.updatePeople(parts)
			var started, failed int
			var lastErr string
			for _, p := range parts {
				if isEgress(p) {
					continue
				}
				for _, tr := range p.Tracks {
					switch ok, err := r.ensureTrack(ctx, p, tr, false); {
					case ok:
						started++
					case err != nil:
						failed++
						lastErr = apiError(err)
					}
				}
			}
			if started == 0 && failed > 0 && !r.hasOpen() {
				errc <- errors.New(lastErr)
				return
			}
		} else if r.hasOpen() {
			// The composite the last run started goes on.
		} else if err := r.startComposite(ctx); err != nil {
			errc <- errors.New(apiError(err))
			return
		}
		if r.t.mode != config.EgressTracks {
			// Who is there at the start (the start notice names them), so that who comes
			// later is told.
			if parts, err := r.t.dep.api.Participants(ctx, r.t.room); err == nil {
				r.updatePeople(parts)
			}
		}
		r.peopleKnown = true
		r.publish()
		errc <- nil
	})
	select {
	case err := <-errc:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	go r.tick()
	return nil
}

// abandon ends a recording that could not start: the egresses started are stopped and the
// (empty) folder is finalised.
func (r *Recording) abandon(cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.b.ctx), closeTimeout)
	defer cancel()
	fin := make(chan struct{})
	if !r.loop.Post(func() {
		for _, f := range r.order {
			if f.open() {
				if _, err := r.t.dep.api.Stop(ctx, f.id); err != nil {
					r.log.Warn().Err(err).Str("egress_id", f.id).Msg("Could not stop an egress of a recording that failed to start")
				}
			}
		}
		r.finish(ctx, "could not start: "+cause.Error())
		close(fin)
	}) {
		close(fin)
	}
	select {
	case <-fin:
	case <-ctx.Done():
	}
}

// tick polls the server: every poll_interval, faster while a stop waits.
func (r *Recording) tick() {
	every := r.t.dep.PollInterval.D()
	timer := time.NewTimer(every)
	defer timer.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.finished:
			return
		case <-r.fast:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
		r.poke()
		if r.stopFast.Load() {
			timer.Reset(stoppingPoll)
		} else {
			timer.Reset(every)
		}
	}
}

// poke asks for a poll soon (a webhook said the room changed); polls do not pile up.
func (r *Recording) poke() {
	if r.pollQueued.CompareAndSwap(false, true) {
		r.loop.Post(r.poll)
	}
}

// poll looks at the egresses and the room: missed webhooks, new and gone tracks, the end.
func (r *Recording) poll() {
	r.pollQueued.Store(false)
	if r.ended {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, apiTimeout)
	defer cancel()
	if r.hasOpen() {
		infos, err := r.t.dep.api.List(ctx, r.t.room)
		if err != nil {
			r.log.Debug().Err(err).Msg("Could not list the room's egresses")
		}
		for _, info := range infos {
			if r.files[info.EgressId] != nil {
				r.onInfo(info)
			}
		}
	}
	parts, err := r.t.dep.api.Participants(ctx, r.t.room)
	gone := errors.Is(err, ErrNoRoom)
	if err != nil && !gone {
		r.log.Warn().Err(err).Msg("Could not list the room's participants")
		r.checkLate()
		r.checkEnd(ctx, false)
		r.publish()
		return
	}
	r.updatePeople(parts)
	humans := 0
	for _, p := range parts {
		if isEgress(p) {
			continue
		}
		humans++
		for _, tr := range p.Tracks {
			if f := r.byTrack[tr.Sid]; f != nil {
				f.muted = tr.Muted
			}
		}
		if r.t.mode == config.EgressTracks && !r.stopping {
			for _, tr := range p.Tracks {
				_, _ = r.ensureTrack(ctx, p, tr, true)
			}
		}
	}
	r.checkLate()
	r.checkEnd(ctx, humans == 0)
	r.publish()
}

// updatePeople follows who is in the room (the manifest's participants).
func (r *Recording) updatePeople(parts []*livekit.ParticipantInfo) {
	now := time.Now()
	seen := map[string]bool{}
	for _, p := range parts {
		if isEgress(p) || p.Identity == "" {
			continue
		}
		seen[p.Identity] = true
		pr := r.people[p.Identity]
		name := clean(p.Name)
		if pr == nil {
			pr = &person{identity: p.Identity, dev: who(p, r.t.members)}
			r.people[p.Identity] = pr
		}
		if !pr.in || pr.name != name {
			joined := now
			if !pr.in && p.JoinedAt > 0 && !r.sess.StartedAt().After(time.Unix(p.JoinedAt, 0)) {
				joined = time.Unix(p.JoinedAt, 0)
			}
			r.sess.AddParticipant(string(pr.dev.User), string(pr.dev.Device), name, joined)
		}
		if !pr.in {
			// Everyone in the recording is told: who comes after the start in a notice.
			who := ""
			if pr.dev.Device == "" {
				who = nonEmpty(name, p.Identity) // not a Matrix user: named, never mentioned
			}
			if r.peopleKnown {
				r.joiners.Joined(pr.dev.User, who, r.optOut[pr.dev.User])
			} else {
				r.joiners.Seen(pr.dev.User)
			}
		}
		pr.in, pr.name = true, name
	}
	for ident, pr := range r.people {
		if pr.in && !seen[ident] {
			pr.in = false
			r.sess.RemoveParticipant(string(pr.dev.User), string(pr.dev.Device), now)
		}
	}
}

// ensureTrack starts a track egress for a published track that has none. It reports
// whether one was started, and the error when starting failed.
func (r *Recording) ensureTrack(ctx context.Context, p *livekit.ParticipantInfo, tr *livekit.TrackInfo, tell bool) (bool, error) {
	if tr == nil || tr.Sid == "" || (tr.Type != livekit.TrackType_AUDIO && tr.Type != livekit.TrackType_VIDEO) {
		return false, nil
	}
	if r.byTrack[tr.Sid] != nil || r.failures[tr.Sid] >= maxFailures {
		return false, nil
	}
	c, ok := codecOf(tr.MimeType, tr.Type)
	info := trackInfo(p, tr, c, r.t.members)
	what := describe(info)
	if r.optOut[id.UserID(info.UserID)] {
		return false, nil
	}
	if !ok {
		r.tellOnce("codec/"+tr.Sid, fmt.Sprintf("⚠️ I cannot record %s: LiveKit Egress cannot write %s tracks to a file.", what, tr.MimeType))
		return false, nil
	}
	file, err := r.sess.AddExternal(recorder.External{Info: info, Ext: c.ext, Remote: r.t.dep.remote, Writer: writerName}, time.Now())
	if err != nil {
		r.tellOnce("add/"+tr.Sid, fmt.Sprintf("⚠️ I cannot record %s: %s.", what, roomerr.Clause(r.log, err, "Could not add an Egress file")))
		return false, err
	}
	out, key, err := r.trackOutput(file)
	if err == nil {
		var ei *livekit.EgressInfo
		ei, err = r.t.dep.api.StartTrack(ctx, &livekit.TrackEgressRequest{RoomName: r.t.room, TrackId: tr.Sid, Output: &livekit.TrackEgressRequest_File{File: out}})
		if err == nil {
			f := &egressFile{id: ei.EgressId, trackSID: tr.Sid, identity: p.Identity, user: who(p, r.t.members).User,
				what: what, kind: "track", file: file, key: key, requested: time.Now(), muted: tr.Muted}
			r.add(f)
			r.onInfo(ei)
			r.log.Info().Str("egress_id", f.id).Str("track", tr.Sid).Str("file", file).Msg("Track egress started")
			return true, nil
		}
	}
	if derr := r.sess.DropExternal(file); derr != nil {
		r.log.Warn().Err(derr).Str("file", file).Msg("Could not drop the file of an egress that did not start")
	}
	r.failures[tr.Sid]++
	r.log.Warn().Err(err).Str("track", tr.Sid).Int("failures", r.failures[tr.Sid]).Msg("Could not start a track egress")
	if tell {
		r.tellOnce("start/"+tr.Sid, fmt.Sprintf("⚠️ I could not start recording %s: %s. I will try again.", what, apiError(err)))
	}
	return false, err
}

// startComposite asks for one room composite: MP4 with the layout, or audio only in Ogg.
func (r *Recording) startComposite(ctx context.Context) error {
	audio := r.t.mode == config.EgressAudio
	info := recorder.TrackInfo{DisplayName: "The whole room", Source: "composite", MimeType: "video/H264", ClockRate: 90000}
	ext, ft, kind := ".mp4", livekit.EncodedFileType_MP4, "video"
	if audio {
		info.MimeType, info.ClockRate, info.Channels = "audio/opus", 48000, 2
		ext, ft, kind = ".ogg", livekit.EncodedFileType_OGG, "audio"
	}
	file, err := r.sess.AddExternal(recorder.External{Info: info, Track: "room", Ext: ext, Kind: kind, Remote: r.t.dep.remote, Writer: writerName}, time.Now())
	if err != nil {
		return err
	}
	out := &livekit.EncodedFileOutput{FileType: ft, DisableManifest: true}
	key := ""
	if r.t.dep.remote {
		up, k, err := r.b.opts.Store.Upload(r.folder, file)
		if err != nil {
			_ = r.sess.DropExternal(file)
			return err
		}
		out.Filepath, key = k, k
		out.Output = &livekit.EncodedFileOutput_S3{S3: up}
	} else {
		out.Filepath = r.t.dep.localPath(r.folder, file)
	}
	req := &livekit.RoomCompositeEgressRequest{RoomName: r.t.room, Layout: r.t.dep.Layout, AudioOnly: audio, FileOutputs: []*livekit.EncodedFileOutput{out}}
	ei, err := r.t.dep.api.StartRoomComposite(ctx, req)
	if err != nil {
		_ = r.sess.DropExternal(file)
		return err
	}
	f := &egressFile{id: ei.EgressId, what: "the room", kind: "composite", file: file, key: key, requested: time.Now()}
	r.add(f)
	r.onInfo(ei)
	r.log.Info().Str("egress_id", f.id).Str("file", file).Bool("audio_only", audio).Msg("Room composite egress started")
	return nil
}

// trackOutput is where a track egress writes a file.
func (r *Recording) trackOutput(file string) (*livekit.DirectFileOutput, string, error) {
	if !r.t.dep.remote {
		return &livekit.DirectFileOutput{Filepath: r.t.dep.localPath(r.folder, file), DisableManifest: true}, "", nil
	}
	up, key, err := r.b.opts.Store.Upload(r.folder, file)
	if err != nil {
		return nil, "", err
	}
	return &livekit.DirectFileOutput{Filepath: key, DisableManifest: true, Output: &livekit.DirectFileOutput_S3{S3: up}}, key, nil
}

func (r *Recording) add(f *egressFile) {
	r.files[f.id] = f
	r.order = append(r.order, f)
	if f.trackSID != "" {
		r.byTrack[f.trackSID] = f
	}
	r.b.track(f.id, r)
	r.saveState()
}

func (r *Recording) hasOpen() bool {
	for _, f := range r.order {
		if f.open() {
			return true
		}
	}
	return false
}

// onInfo applies what the server says about one of the recording's egresses (from a
// webhook, the API answer or a poll, in any order).
func (r *Recording) onInfo(info *livekit.EgressInfo) {
	f := r.files[info.EgressId]
	if f == nil || f.done {
		return
	}
	if info.UpdatedAt != 0 && info.UpdatedAt < f.updatedAt && info.Status < livekit.EgressStatus_EGRESS_COMPLETE {
		return // an older report
	}
	f.updatedAt = max(f.updatedAt, info.UpdatedAt)
	f.status = info.Status
	switch info.Status {
	case livekit.EgressStatus_EGRESS_ACTIVE, livekit.EgressStatus_EGRESS_ENDING:
		// An egress stopped before it started goes to ENDING without a start time.
		if f.activeAt.IsZero() && (info.Status == livekit.EgressStatus_EGRESS_ACTIVE || info.StartedAt > 0) {
			f.activeAt = time.Now()
			if info.StartedAt > 0 {
				f.activeAt = time.Unix(0, info.StartedAt)
			}
			if err := r.sess.ActivateExternal(f.file); err != nil {
				r.log.Warn().Err(err).Str("file", f.file).Msg("Could not announce the file")
			}
			r.log.Info().Str("egress_id", f.id).Str("file", f.file).Msg("Egress is recording")
		}
	case livekit.EgressStatus_EGRESS_COMPLETE, livekit.EgressStatus_EGRESS_FAILED,
		livekit.EgressStatus_EGRESS_ABORTED, livekit.EgressStatus_EGRESS_LIMIT_REACHED:
		r.complete(f, info)
	}
	r.publish()
}

// complete records how an egress's file came out.
func (r *Recording) complete(f *egressFile, info *livekit.EgressInfo) {
	f.done = true
	if f.trackSID != "" && r.byTrack[f.trackSID] == f {
		delete(r.byTrack, f.trackSID)
	}
	fi := fileResult(info)
	log := r.log.With().Str("egress_id", f.id).Str("file", f.file).Stringer("status", info.Status).Str("error", info.Error).Logger()
	if info.Status == livekit.EgressStatus_EGRESS_ABORTED && (fi == nil || fi.Size == 0) {
		// Egress never wrote media (the track ended, or the stop came, before its pipeline
		// started): nothing was recorded, so nothing is listed.
		f.endNote = "aborted: " + info.Error
		if err := r.sess.DropExternal(f.file); err != nil {
			_ = r.sess.FinishExternal(f.file, recorder.ExternalResult{Failed: "Egress aborted: " + info.Error})
		}
		r.saveState()
		log.Info().Msg("Egress ended before any media")
		if !r.stopping && !f.optedOut && f.activeAt.IsZero() && info.Error != "" && !isNoMedia(info.Error) {
			r.tellOnce("abort/"+f.id, fmt.Sprintf("⚠️ LiveKit Egress gave up on %s: %s.", f.what, roomerr.Clause(log, errors.New(info.Error), "LiveKit Egress gave up")))
		}
		return
	}
	res := recorder.ExternalResult{Reason: r.endReason(f, info)}
	var size int64 // as Egress reports it
	if fi != nil {
		size = fi.Size
		if fi.StartedAt > 0 {
			res.StartedAt = time.Unix(0, fi.StartedAt)
		}
		res.Duration = time.Duration(fi.Duration)
	}
	if res.StartedAt.IsZero() && info.StartedAt > 0 {
		res.StartedAt = time.Unix(0, info.StartedAt)
	}
	switch info.Status {
	case livekit.EgressStatus_EGRESS_FAILED:
		res.Failed = "LiveKit Egress failed: " + info.Error
		r.tellOnce("fail/"+f.id, fmt.Sprintf("⚠️ Recording %s failed in LiveKit Egress: %s.", f.what, roomerr.Clause(log, errors.New(nonEmpty(info.Error, "no reason given")), "LiveKit Egress failed")))
	case livekit.EgressStatus_EGRESS_LIMIT_REACHED:
		r.tellOnce("limit/"+f.id, fmt.Sprintf("⏱ LiveKit Egress stopped recording %s: it reached its own time limit.", f.what))
	}
	if r.t.dep.remote && res.Failed == "" {
		ctx, cancel := context.WithTimeout(r.ctx, apiTimeout)
		up, err := r.b.opts.Store.Confirm(ctx, r.folder, f.file, f.key, size)
		cancel()
		if err != nil {
			res.Failed = "the upload to object storage could not be confirmed: " + err.Error()
			r.tellOnce("upload/"+f.id, fmt.Sprintf("⚠️ LiveKit Egress recorded %s, but its upload to object storage could not be confirmed: %s.", f.what, roomerr.Clause(log, err, "Could not confirm an Egress upload")))
		} else {
			res.Upload = &up
		}
	}
	f.endNote = res.Reason
	if res.Failed != "" {
		f.endNote = res.Failed
		r.failures[f.trackSID]++
	}
	if err := r.sess.FinishExternal(f.file, res); err != nil {
		log.Warn().Err(err).Msg("Could not record the finished file")
	}
	r.saveState()
	log.Info().Dur("duration", res.Duration).Int64("bytes", size).Msg("Egress finished its file")
}

func (r *Recording) endReason(f *egressFile, info *livekit.EgressInfo) string {
	switch {
	case info.Status == livekit.EgressStatus_EGRESS_LIMIT_REACHED:
		return "LiveKit Egress's time limit"
	case f.optedOut:
		return "the participant opted out"
	case r.stopping:
		return "recording stopped"
	case f.kind == "composite":
		return "the room ended"
	}
	return "the track ended"
}

// checkLate tells the room about egresses that do not start.
func (r *Recording) checkLate() {
	limit := r.t.dep.StartTimeout.D()
	for _, f := range r.order {
		if f.done || !f.activeAt.IsZero() || r.told["late/"+f.id] || f.muted || time.Since(f.requested) < limit {
			continue
		}
		r.log.Warn().Str("egress_id", f.id).Stringer("status", f.status).Msg("Egress has not started")
		r.tellOnce("late/"+f.id, fmt.Sprintf("⚠️ LiveKit Egress has not started recording %s after %s (is the worker overloaded, or is no media coming?). I keep waiting.", f.what, limit.Round(time.Second)))
	}
}

// checkEnd ends the recording when a stop has gathered every file, or when the room has
// been empty (or gone) for the grace time and every egress has ended.
func (r *Recording) checkEnd(ctx context.Context, empty bool) {
	if r.ended {
		return
	}
	if r.stopping {
		r.checkStopped(ctx)
		return
	}
	if r.t.mode != config.EgressTracks && len(r.order) > 0 && !r.hasOpen() {
		// The composite ended by itself (the room closed, or Egress gave up).
		f := r.order[len(r.order)-1]
		r.finish(ctx, "LiveKit Egress ended the recording ("+nonEmpty(f.endNote, f.status.String())+")")
		return
	}
	if !empty {
		r.emptySince = time.Time{}
		return
	}
	if r.emptySince.IsZero() {
		r.emptySince = time.Now()
	}
	if time.Since(r.emptySince) >= r.b.opts.EndGrace && !r.hasOpen() {
		r.finish(ctx, "everyone left the LiveKit room")
	}
}

// checkStopped ends a stopping recording once every egress has reported its end (or the
// stop's time is up).
func (r *Recording) checkStopped(ctx context.Context) {
	if r.ended || !r.stopping {
		return
	}
	if !r.hasOpen() {
		r.finish(ctx, r.stopReason)
		return
	}
	if time.Now().After(r.stopDeadline) {
		r.giveUp(fmt.Sprintf("LiveKit Egress did not report the end within %s", r.b.opts.StopTimeout))
		r.finish(ctx, r.stopReason)
	}
}

// giveUp records the files whose egress did not report its end as interrupted.
func (r *Recording) giveUp(why string) {
	for _, f := range r.order {
		if !f.open() {
			continue
		}
		f.done = true
		f.endNote = why
		if f.activeAt.IsZero() {
			if err := r.sess.DropExternal(f.file); err == nil {
				continue
			}
		}
		if err := r.sess.FinishExternal(f.file, recorder.ExternalResult{StartedAt: f.activeAt, Failed: why}); err != nil {
			r.log.Warn().Err(err).Str("file", f.file).Msg("Could not record the file")
		}
	}
}

// finish finalises the manifest and ends the recording.
func (r *Recording) finish(ctx context.Context, why string) {
	if r.ended {
		return
	}
	r.ended = true
	r.giveUp("the recording ended before LiveKit Egress reported this file")
	r.end(ctx, false, why, "Egress recording ended")
}

// end closes (or, with pause, pauses) the recording's session in this process, bounded by
// closeTimeout, keeps the result, and ends the recording's loop.
func (r *Recording) end(ctx context.Context, pause bool, why, msg string) {
	r.saveState()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	m, err := r.sess.End(cctx, pause, why)
	cancel()
	r.mu.Lock()
	r.result, r.why, r.err = m, why, err
	r.mu.Unlock()
	r.publish()
	r.b.finished(r)
	r.log.Info().Str("why", why).Int("files", len(m.Tracks)).Msg(msg)
	// Done before finished: Stop returns on finished, and its caller may look at Done.
	r.doneOnce.Do(func() { close(r.done) })
	close(r.finished)
	r.loop.Stop()
	r.cancel()
}

// Stop stops every egress, waits for Egress to finish and upload the files (bounded by
// ctx and options.StopTimeout), and returns the final manifest.
func (r *Recording) Stop(ctx context.Context, reason string) (recorder.Manifest, error) {
	r.loop.Post(func() {
		if r.ended || r.stopping {
			return
		}
		r.stopping = true
		r.stopReason = reason
		r.stopDeadline = time.Now().Add(r.b.opts.StopTimeout)
		if dl, ok := ctx.Deadline(); ok && dl.Add(-2*time.Second).Before(r.stopDeadline) {
			r.stopDeadline = dl.Add(-2 * time.Second)
		}
		r.stopFast.Store(true)
		select {
		case r.fast <- struct{}{}:
		default:
		}
		sctx, cancel := context.WithTimeout(r.ctx, apiTimeout)
		defer cancel()
		for _, f := range r.order {
			if !f.open() {
				continue
			}
			info, err := r.t.dep.api.Stop(sctx, f.id)
			if err != nil {
				r.log.Info().Err(err).Str("egress_id", f.id).Msg("Stop egress")
				continue
			}
			r.onInfo(info)
		}
		r.checkStopped(sctx)
	})
	select {
	case <-r.finished:
	case <-ctx.Done():
		// Out of time: record what is known, now.
		fin := make(chan struct{})
		if r.loop.Post(func() {
			r.giveUp("the recording was stopped before LiveKit Egress reported this file")
			r.finish(context.WithoutCancel(ctx), reason)
			close(fin)
		}) {
			select {
			case <-fin:
			case <-time.After(closeTimeout):
			}
		}
	}
	return r.outcome("finish")
}

// outcome is the recording's result once it finished, else its manifest so far and an
// error saying that it did not do (what) in time.
func (r *Recording) outcome(what string) (recorder.Manifest, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.finished:
		return r.result, r.err
	default:
		return r.sess.Manifest(), fmt.Errorf("the egress recording did not %s in time", what)
	}
}

// Pause implements call.Pauser: the egresses go on (Egress is a service of its own) and
// the state file lists them, so the next start takes the recording over as after a crash,
// with nothing lost meanwhile; the folder is left to be resumed.
func (r *Recording) Pause(ctx context.Context, reason string) (recorder.Manifest, error) {
	fin := make(chan struct{})
	if r.loop.Post(func() {
		defer close(fin)
		r.pause(ctx, reason)
	}) {
		select {
		case <-fin:
		case <-ctx.Done():
		}
	}
	select {
	case <-r.finished:
	case <-ctx.Done():
	}
	return r.outcome("pause")
}

var _ call.Pauser = (*Recording)(nil)

// pause ends the recording's part in this process (on the loop), leaving its egresses
// running; a recording that is ending already finishes as it was.
func (r *Recording) pause(ctx context.Context, reason string) {
	if r.ended || r.stopping {
		return
	}
	r.ended = true
	r.end(ctx, true, reason, "Egress recording paused; its egresses go on")
}

// Done is closed when the recording ended.
func (r *Recording) Done() <-chan struct{} { return r.done }

// Result returns the final manifest and why the recording ended.
func (r *Recording) Result() (recorder.Manifest, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.result, r.why, r.err
}

// SetOptOut stops recording a person's tracks (tracks mode) or says why it cannot (a room
// composite mixes everyone).
func (r *Recording) SetOptOut(ctx context.Context, user id.UserID, optOut bool) {
	r.loop.Post(func() {
		r.optOut[user] = optOut
		r.sess.SetOptOut(string(user), optOut, time.Now())
		if !optOut {
			r.poke()
			return
		}
		if r.t.mode != config.EgressTracks {
			r.tell(fmt.Sprintf("⚠️ %s: this recording is a composite of the whole room; I cannot leave one person out of it. Type %sstop to end it.", user, r.b.opts.CommandPrefix))
			return
		}
		sctx, cancel := context.WithTimeout(r.ctx, apiTimeout)
		defer cancel()
		for _, f := range r.order {
			if f.open() && f.user == user {
				f.optedOut = true
				if info, err := r.t.dep.api.Stop(sctx, f.id); err == nil {
					r.onInfo(info)
				} else {
					r.log.Warn().Err(err).Str("egress_id", f.id).Msg("Could not stop the egress of someone who opted out")
				}
			}
		}
	})
}

// Mark adds a note on the timeline.
func (r *Recording) Mark(user id.UserID, text string, at time.Time) {
	r.sess.AddMarker(string(user), text, at)
}

// Status is a snapshot for !status.
func (r *Recording) Status() call.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.snap
	s.State = call.RecordingState(r.done, r.live)
	s.Participants = append([]call.ParticipantStatus(nil), s.Participants...)
	s.Details = append([]string(nil), s.Details...)
	return s
}

// publish refreshes the snapshot Status returns (on the loop).
func (r *Recording) publish() {
	s := call.Status{Backend: "egress", RoomID: r.room, StartedAt: r.sess.StartedAt(), Folder: r.sess.Folder()}
	perIdentity := map[string]int{}
	live := 0
	for _, f := range r.order {
		if f.open() {
			s.Tracks++
			perIdentity[f.identity]++
			if !f.activeAt.IsZero() {
				live++
			}
		}
	}
	idents := make([]string, 0, len(r.people))
	for ident := range r.people {
		idents = append(idents, ident)
	}
	sort.Strings(idents)
	for _, ident := range idents {
		p := r.people[ident]
		if !p.in {
			continue
		}
		ps := call.ParticipantStatus{
			UserID: p.dev.User, DeviceID: id.DeviceID(nonEmpty(string(p.dev.Device), "LiveKit")),
			Tracks: perIdentity[ident], OptedOut: r.optOut[p.dev.User],
		}
		if ps.OptedOut && r.t.mode == config.EgressTracks {
			live++ // left out by their choice, not missing (call.RecordingState)
		}
		if p.dev.Device == "" {
			// Not a Matrix user: named, never mentioned.
			ps.DisplayName = nonEmpty(p.name, p.identity)
		}
		s.Participants = append(s.Participants, ps)
	}
	s.Details = r.egressLines()
	r.mu.Lock()
	r.snap, r.live = s, live
	r.mu.Unlock()
}

// egressLines lists the recording's egresses as livekit-cli list-egress does: id, status,
// kind, what, since when, the file.
func (r *Recording) egressLines() []string {
	out := []string{fmt.Sprintf("LiveKit Egress on %s, %s, mode %s, files to %s:", r.t.dep.Name, r.t.what, r.t.mode, map[bool]string{true: "S3", false: "the call folder"}[r.t.dep.remote])}
	shown := 0
	for i := len(r.order) - 1; i >= 0 && shown < maxListed; i-- {
		f := r.order[i]
		since := "not started"
		if !f.activeAt.IsZero() {
			since = "since " + f.activeAt.UTC().Format("15:04:05")
		}
		line := fmt.Sprintf("• %s  %s  %s  %s  %s  %s", f.id, statusWord(f.status), f.kind, f.what, since, f.file)
		if f.done && f.endNote != "" {
			line += "  (" + f.endNote + ")"
		}
		out = append(out, line)
		shown++
	}
	if len(r.order) > shown {
		out = append(out, fmt.Sprintf("… and %d more", len(r.order)-shown))
	}
	return out
}

// tellOnce posts a notice in the Matrix room once per key.
func (r *Recording) tellOnce(key, text string) {
	if r.told[key] {
		return
	}
	r.told[key] = true
	r.tell(text)
}

func (r *Recording) tell(text string) {
	room := r.room
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.b.ctx), 30*time.Second)
		defer cancel()
		r.b.mx.Notice(ctx, room, text)
	}()
}

// fileResult is the file an egress reports (results list or the older single field).
func fileResult(info *livekit.EgressInfo) *livekit.FileInfo {
	if len(info.FileResults) > 0 {
		return info.FileResults[0]
	}
	return info.GetFile() //nolint:staticcheck // older servers fill only this
}

func statusWord(s livekit.EgressStatus) string {
	switch s {
	case livekit.EgressStatus_EGRESS_STARTING:
		return "starting"
	case livekit.EgressStatus_EGRESS_ACTIVE:
		return "active"
	case livekit.EgressStatus_EGRESS_ENDING:
		return "ending"
	case livekit.EgressStatus_EGRESS_COMPLETE:
		return "complete"
	case livekit.EgressStatus_EGRESS_FAILED:
		return "failed"
	case livekit.EgressStatus_EGRESS_ABORTED:
		return "aborted"
	case livekit.EgressStatus_EGRESS_LIMIT_REACHED:
		return "limit_reached"
	}
	return s.String()
}

// isNoMedia tells Egress's own words for "no media came before the stop".
func isNoMedia(msg string) bool {
	return msg == "Stop called before pipeline could start" || msg == "Source closed"
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// describe names a track for people: "Alice's microphone".
func describe(i recorder.TrackInfo) string {
	name := i.DisplayName
	if name == "" {
		name = i.UserID
	}
	src := sourceWords[i.Source]
	if src == "" {
		src = i.Source
	}
	return name + "'s " + src
}

package egress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/livekit/protocol/livekit"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// StateFile is kept in the call folder of an Egress recording: which LiveKit room it
// records and which egresses write which files. Egress goes on recording when the bot
// dies; with this file the next start takes the recording over instead of losing it.
const StateFile = "egress.json"

// writerName marks Egress's files in the manifest.
const writerName = "livekit-egress"

// pendingTTL is how long after start-up an interrupted recording waits to be resumed.
const pendingTTL = 30 * time.Minute

type state struct {
	Version    int    `json:"version"`
	Deployment string `json:"deployment"`
	Room       string `json:"livekit_room"`
	Mode       string `json:"mode"`
	What       string `json:"what"`
	// Slug is the Meet room's slug and StartedBy who typed !start: with them a take-over
	// checks the config's permission again as the start did.
	Slug       string                         `json:"meet_slug,omitempty"`
	StartedBy  string                         `json:"started_by,omitempty"`
	Members    map[string]matrixrtc.DeviceKey `json:"-"`
	MemberList []stateMember                  `json:"members,omitempty"`
	Egresses   []stateEgress                  `json:"egresses"`
}

type stateMember struct {
	Identity string `json:"identity"`
	User     string `json:"user_id"`
	Device   string `json:"device_id"`
}

type stateEgress struct {
	ID       string `json:"egress_id"`
	TrackSID string `json:"track_sid,omitempty"`
	Identity string `json:"identity,omitempty"`
	User     string `json:"user_id,omitempty"`
	What     string `json:"what"`
	Kind     string `json:"kind"`
	File     string `json:"file"`
	Key      string `json:"key,omitempty"`
	Done     bool   `json:"done"`
}

// saveState writes the state file atomically (on the loop).
func (r *Recording) saveState() {
	st := state{Version: 1, Deployment: r.t.dep.Name, Room: r.t.room, Mode: r.t.mode, What: r.t.what, Slug: r.t.slug, StartedBy: string(r.t.by)}
	for ident, d := range r.t.members {
		st.MemberList = append(st.MemberList, stateMember{Identity: ident, User: string(d.User), Device: string(d.Device)})
	}
	sort.Slice(st.MemberList, func(i, j int) bool { return st.MemberList[i].Identity < st.MemberList[j].Identity })
	for _, f := range r.order {
		st.Egresses = append(st.Egresses, stateEgress{ID: f.id, TrackSID: f.trackSID, Identity: f.identity, User: string(f.user),
			What: f.what, Kind: f.kind, File: f.file, Key: f.key, Done: f.done})
	}
	if err := recorder.WriteJSONAtomic(filepath.Join(r.sess.Folder(), StateFile), st); err != nil {
		r.log.Warn().Err(err).Msg("Could not write the egress state file; a restart could not take the recording over")
	}
}

// maxStateBytes bounds a state file read back (thousands of egresses fit).
const maxStateBytes = 4 << 20

func readState(folder string) (*state, error) {
	f, err := os.Open(filepath.Join(folder, StateFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st state
	dec := json.NewDecoder(&limitedReader{f: f, n: maxStateBytes})
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("read %s: %w", StateFile, err)
	}
	if st.Version != 1 || st.Deployment == "" || !roomName.MatchString(st.Room) {
		return nil, fmt.Errorf("%s: not a state this version understands", StateFile)
	}
	st.Members = map[string]matrixrtc.DeviceKey{}
	for _, m := range st.MemberList {
		st.Members[m.Identity] = matrixrtc.DeviceKey{User: id.UserID(m.User), Device: id.DeviceID(m.Device)}
	}
	return &st, nil
}

type limitedReader struct {
	f interface{ Read([]byte) (int, error) }
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("state file too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.f.Read(p)
	l.n -= int64(n)
	return n, err
}

// pending is an Egress recording a crash or kill interrupted, waiting to be taken over.
type pending struct {
	folder string // name in the recordings dir
	st     *state
	found  time.Time
}

// findInterrupted lists the call folders of Egress recordings the last run left
// interrupted (start-up recovery has marked them), newest per Matrix room.
func (b *Backend) findInterrupted() map[id.RoomID]*pending {
	out := map[id.RoomID]*pending{}
	entries, err := os.ReadDir(b.rec.Dir())
	if err != nil {
		return out
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		folder := filepath.Join(b.rec.Dir(), e.Name())
		if _, err := os.Stat(filepath.Join(folder, StateFile)); err != nil {
			continue
		}
		m, err := recorder.ReadManifest(folder)
		if err != nil || m.Kind != recorder.KindEgress || m.Status != recorder.StatusInterrupted {
			continue
		}
		st, err := readState(folder)
		if err != nil || b.deployment(st.Deployment) == nil {
			b.log.Warn().Err(err).Str("folder", e.Name()).Msg("An interrupted Egress recording cannot be taken over")
			continue
		}
		room := id.RoomID(m.RoomID)
		if p := out[room]; p == nil || p.folder < e.Name() {
			out[room] = &pending{folder: e.Name(), st: st, found: time.Now()}
		}
	}
	return out
}

// takePending returns (and forgets) the interrupted recording of a room, if it is recent.
func (b *Backend) takePending(room id.RoomID, remove bool) *pending {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pending[room]
	if p == nil {
		return nil
	}
	if time.Since(p.found) > pendingTTL {
		delete(b.pending, room)
		return nil
	}
	if remove {
		delete(b.pending, room)
	}
	return p
}

// adopt takes over the egresses the interrupted run started: those Egress still runs are
// followed again, those that ended meanwhile are finished with what Egress reports.
func (r *Recording) adopt(ctx context.Context, st *state) {
	done := make(chan struct{})
	r.loop.Post(func() {
		defer close(done)
		infos, err := r.t.dep.api.List(ctx, r.t.room)
		if err != nil {
			r.log.Warn().Err(err).Msg("Could not list the egresses to take over")
		}
		byID := map[string]*livekit.EgressInfo{}
		for _, i := range infos {
			byID[i.EgressId] = i
		}
		for _, se := range st.Egresses {
			if se.Done {
				continue
			}
			if err := r.sess.AdoptExternal(se.File, se.Key != ""); err != nil {
				r.log.Warn().Err(err).Str("file", se.File).Msg("Could not take a file over")
				continue
			}
			f := &egressFile{id: se.ID, trackSID: se.TrackSID, identity: se.Identity, user: id.UserID(se.User), what: se.What,
				kind: se.Kind, file: se.File, key: se.Key, requested: time.Now(), status: livekit.EgressStatus_EGRESS_STARTING}
			if f.key != "" && r.b.opts.Store != nil {
				r.b.opts.Store.Expect(f.key)
			}
			r.add(f)
			info := byID[se.ID]
			if info == nil {
				f.done = true
				f.endNote = "LiveKit no longer knows this egress"
				if err := r.sess.FinishExternal(f.file, recorder.ExternalResult{Failed: "LiveKit no longer knows the egress that wrote it (it ended while the recorder was down)"}); err != nil {
					r.log.Warn().Err(err).Str("file", f.file).Msg("Could not record the file")
				}
				continue
			}
			r.log.Info().Str("egress_id", f.id).Str("file", f.file).Stringer("status", info.Status).Msg("Taking an egress over")
			r.onInfo(info)
		}
		r.saveState()
	})
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// stopLeftovers asks Egress to stop the egresses an interrupted recording left running
// (one the config no longer allows). Best effort: failures are logged.
func (b *Backend) stopLeftovers(ctx context.Context, d *deployment, st *state) {
	for _, e := range st.Egresses {
		if e.Done || e.ID == "" {
			continue
		}
		if _, err := d.api.Stop(ctx, e.ID); err != nil {
			b.log.Warn().Err(err).Str("deployment", d.Name).Str("egress_id", e.ID).Msg("Could not stop an egress of a recording that is no longer allowed")
		}
	}
}

package egress

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// fakeAPI is a LiveKit server in memory: rooms with participants, and egresses that the
// test moves through their states.
type fakeAPI struct {
	mu        sync.Mutex
	rooms     map[string][]*livekit.ParticipantInfo
	egresses  map[string]*livekit.EgressInfo
	tracks    map[string]*livekit.TrackEgressRequest
	composite map[string]*livekit.RoomCompositeEgressRequest
	stopped   []string
	startErr  map[string]error // by track sid
	n         int
	// asked counts RoomExists calls, polls Participants calls.
	asked, polls int
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{rooms: map[string][]*livekit.ParticipantInfo{}, egresses: map[string]*livekit.EgressInfo{},
		tracks: map[string]*livekit.TrackEgressRequest{}, composite: map[string]*livekit.RoomCompositeEgressRequest{}, startErr: map[string]error{}}
}

func (f *fakeAPI) setRoom(room string, ps ...*livekit.ParticipantInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rooms[room] = ps
}

func (f *fakeAPI) RoomExists(_ context.Context, room string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	_, ok := f.rooms[room]
	return ok, nil
}

func (f *fakeAPI) Participants(_ context.Context, room string) ([]*livekit.ParticipantInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	ps, ok := f.rooms[room]
	if !ok {
		return nil, ErrNoRoom
	}
	return append([]*livekit.ParticipantInfo(nil), ps...), nil
}

func (f *fakeAPI) newInfo(room string) *livekit.EgressInfo {
	f.n++
	info := &livekit.EgressInfo{EgressId: fmt.Sprintf("EG_%d", f.n), RoomName: room, Status: livekit.EgressStatus_EGRESS_STARTING, UpdatedAt: time.Now().UnixNano()}
	f.egresses[info.EgressId] = info
	return info
}

func (f *fakeAPI) StartTrack(_ context.Context, req *livekit.TrackEgressRequest) (*livekit.EgressInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.startErr[req.TrackId]; err != nil {
		return nil, err
	}
	info := f.newInfo(req.RoomName)
	f.tracks[info.EgressId] = req
	return clone(info), nil
}

func (f *fakeAPI) StartRoomComposite(_ context.Context, req *livekit.RoomCompositeEgressRequest) (*livekit.EgressInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info := f.newInfo(req.RoomName)
	f.composite[info.EgressId] = req
	return clone(info), nil
}

func (f *fakeAPI) Stop(_ context.Context, egressID string) (*livekit.EgressInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info := f.egresses[egressID]
	if info == nil {
		return nil, errors.New("not found")
	}
	f.stopped = append(f.stopped, egressID)
	if info.Status <= livekit.EgressStatus_EGRESS_ACTIVE {
		info.Status = livekit.EgressStatus_EGRESS_ENDING
		info.UpdatedAt = time.Now().UnixNano()
	}
	return clone(info), nil
}

func (f *fakeAPI) List(_ context.Context, room string) ([]*livekit.EgressInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*livekit.EgressInfo
	for _, e := range f.egresses {
		if e.RoomName == room {
			out = append(out, clone(e))
		}
	}
	return out, nil
}

// set moves an egress to a status (with a file result for ended ones) and returns it.
func (f *fakeAPI) set(id string, st livekit.EgressStatus, fi *livekit.FileInfo, errMsg string) *livekit.EgressInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	info := f.egresses[id]
	info.Status = st
	info.Error = errMsg
	info.UpdatedAt = time.Now().UnixNano()
	if st == livekit.EgressStatus_EGRESS_ACTIVE && info.StartedAt == 0 {
		info.StartedAt = time.Now().UnixNano()
	}
	if fi != nil {
		info.FileResults = []*livekit.FileInfo{fi}
	}
	return clone(info)
}

func (f *fakeAPI) stops() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.stopped)
}

func (f *fakeAPI) trackReq(id string) *livekit.TrackEgressRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tracks[id]
}

// egressOf returns the egress of a track.
func (f *fakeAPI) egressOf(t *testing.T, trackSID string) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var found string
	for id, req := range f.tracks {
		if req.TrackId == trackSID && f.egresses[id].Status < livekit.EgressStatus_EGRESS_COMPLETE {
			found = id
		}
	}
	return found
}

func clone(i *livekit.EgressInfo) *livekit.EgressInfo {
	c := &livekit.EgressInfo{EgressId: i.EgressId, RoomName: i.RoomName, Status: i.Status, StartedAt: i.StartedAt,
		EndedAt: i.EndedAt, UpdatedAt: i.UpdatedAt, Error: i.Error}
	c.FileResults = append(c.FileResults, i.FileResults...)
	return c
}

// fakeMatrix collects notices.
type fakeMatrix struct {
	mu        sync.Mutex
	notices   []string
	encrypted bool
}

func (m *fakeMatrix) UserID() id.UserID     { return "@bot:example.org" }
func (m *fakeMatrix) DeviceID() id.DeviceID { return "BOT" }
func (m *fakeMatrix) SendMessage(context.Context, id.RoomID, event.Type, any) (id.EventID, error) {
	return "$x", nil
}
func (m *fakeMatrix) SendState(context.Context, id.RoomID, event.Type, string, any) error { return nil }
func (m *fakeMatrix) SendToDevice(context.Context, event.Type, map[id.UserID]map[id.DeviceID]any, bool) error {
	return nil
}
func (m *fakeMatrix) State(context.Context, id.RoomID) (mautrix.RoomStateMap, error) { return nil, nil }
func (m *fakeMatrix) JoinedMembers(context.Context, id.RoomID) (map[id.UserID]string, error) {
	return nil, nil
}
func (m *fakeMatrix) IsEncrypted(context.Context, id.RoomID) bool                   { return m.encrypted }
func (m *fakeMatrix) ICEServers(context.Context) []webrtc.ICEServer                 { return nil }
func (m *fakeMatrix) OpenIDToken(context.Context) (*mautrix.RespOpenIDToken, error) { return nil, nil }
func (m *fakeMatrix) Notice(_ context.Context, _ id.RoomID, text string, _ ...id.UserID) id.EventID {
	m.mu.Lock()
	m.notices = append(m.notices, text)
	m.mu.Unlock()
	return "$n"
}

func (m *fakeMatrix) waitNotice(t *testing.T, substr string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.mu.Lock()
		for _, n := range m.notices {
			if strings.Contains(n, substr) {
				m.mu.Unlock()
				return n
			}
		}
		all := append([]string(nil), m.notices...)
		m.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no notice with %q; notices: %q", substr, all)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// harness is a backend over a fake server, with a real recorder in a temp folder.
type harness struct {
	api *fakeAPI
	mx  *fakeMatrix
	rec *recorder.Recorder
	be  *Backend
}

const testSecret = "0123456789abcdef0123456789abcdef-secret"

func newHarness(t *testing.T, mod func(o *Options, d *config.LiveKitDeployment)) *harness {
	t.Helper()
	h := &harness{api: newFakeAPI(), mx: &fakeMatrix{}}
	var err error
	h.rec, err = recorder.New(recorder.Options{Dir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	d := config.DefaultLiveKitDeployment()
	d.Name, d.URL, d.APIKey, d.APISecret, d.Output = "meet", "wss://lk.example.org", "APIkey", testSecret, config.OutputLocal
	d.PollInterval = config.Duration(time.Hour) // the tests poll by hand
	// The rooms the tests record from may record every room (access_test.go tests who may).
	d.AllowedRooms = []config.LiveKitRoomGrant{{MatrixRoom: "!r:example.org", LiveKitRooms: []string{"*"}}, {MatrixRoom: "!r2:example.org", LiveKitRooms: []string{"*"}}}
	o := Options{EndGrace: 50 * time.Millisecond, StopTimeout: 5 * time.Second}
	if mod != nil {
		mod(&o, &d)
	}
	o.Deployments = []config.LiveKitDeployment{d}
	o.NewAPI = func(config.LiveKitDeployment, string) API { return h.api }
	h.be, err = New(h.mx, h.rec, o, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.be.Close(context.Background()) })
	return h
}

// restarted is the backend of the next run of the recorder, on the same recordings and
// fake server, allowed to record room1 from !r:example.org; a recording ends an hour
// after its room empties.
func (h *harness) restarted(t *testing.T) *Backend {
	t.Helper()
	rec, err := recorder.New(recorder.Options{Dir: h.rec.Dir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	d := config.DefaultLiveKitDeployment()
	d.Name, d.URL, d.APIKey, d.APISecret, d.Output = "meet", "wss://lk.example.org", "APIkey", testSecret, config.OutputLocal
	d.PollInterval = config.Duration(time.Hour)
	d.AllowedRooms = []config.LiveKitRoomGrant{{MatrixRoom: "!r:example.org", LiveKitRooms: []string{"room1"}}}
	be, err := New(h.mx, rec, Options{Deployments: []config.LiveKitDeployment{d}, EndGrace: time.Hour,
		NewAPI: func(config.LiveKitDeployment, string) API { return h.api }}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close(context.Background()) })
	return be
}

func participant(identity, name string, tracks ...*livekit.TrackInfo) *livekit.ParticipantInfo {
	return &livekit.ParticipantInfo{Identity: identity, Name: name, Tracks: tracks, JoinedAt: time.Now().Unix()}
}

func mic(sid string) *livekit.TrackInfo {
	return &livekit.TrackInfo{Sid: sid, Type: livekit.TrackType_AUDIO, Source: livekit.TrackSource_MICROPHONE, MimeType: "audio/red"}
}

func cam(sid, mime string) *livekit.TrackInfo {
	return &livekit.TrackInfo{Sid: sid, Type: livekit.TrackType_VIDEO, Source: livekit.TrackSource_CAMERA, MimeType: mime}
}

// sync runs a function on the recording's loop and waits for it.
func (r *Recording) sync(fn func()) {
	done := make(chan struct{})
	if !r.loop.Post(func() { fn(); close(done) }) {
		return
	}
	select {
	case <-done:
	case <-r.finished:
	}
}

// writeFile writes what Egress would have written for an egress (local output).
func writeFile(t *testing.T, req *livekit.TrackEgressRequest, data string) *livekit.FileInfo {
	t.Helper()
	path := req.GetFile().Filepath
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return &livekit.FileInfo{Filename: filepath.Base(path), Location: path, Size: int64(len(data)),
		StartedAt: time.Now().Add(-2 * time.Second).UnixNano(), Duration: int64(2 * time.Second)}
}

func (f *fakeAPI) counts() (asked, polls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked, f.polls
}

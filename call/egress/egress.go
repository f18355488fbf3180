// Package egress records rooms of the LiveKit servers an operator runs through LiveKit
// Egress, as La Suite Meet does: the bot asks Egress (through the server API) to record
// and follows the result through LiveKit's webhooks, instead of joining the room itself.
//
// In tracks mode every published track gets its own track egress, including tracks
// published later, so a room is recorded multitrack like the rest of this project: one
// file per person and source (Opus in Ogg, VP8/VP9 in WebM, H.264 in MP4), named and
// listed in the manifest as native recordings, each placed on the call's timeline by the
// time Egress started it. Composite mode asks for one room composite (MP4, or audio only
// in Ogg as Meet's transcript mode). Egress writes the files into the operator's S3
// bucket (the same objects, keys and links as native uploads) or straight into the call
// folder when it shares the filesystem.
//
// Egress cannot decrypt end-to-end encrypted media, so encrypted Element Call calls are
// always recorded by the subscriber backend (call/livekit); unencrypted ones can be
// recorded here when the operator asks for it and their SFU is one of the deployments.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	lk "github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// Store is the operator's object storage as Egress uses it: where it uploads a file, and
// how an uploaded file is checked and recorded so that its link goes out like a native
// one. The bot implements it over storage.s3; nil means files are written locally.
type Store interface {
	// Upload returns the S3 target Egress gets for a file of a call folder, and the
	// object's key. From then on a store notification for the key is kept as evidence.
	Upload(folder, file string) (*livekit.S3Upload, string, error)
	// Confirm checks the object Egress uploaded (it must exist with size bytes) and records
	// it as the file's confirmed copy, and returns where it is.
	Confirm(ctx context.Context, folder, file, key string, size int64) (recorder.Upload, error)
	// Expect says Egress will upload an object (one a recording taken over after a restart
	// goes on writing), so the store's notification is kept as evidence.
	Expect(key string)
}

// ElementCall finds an Element Call call's SFU and room the way the subscriber backend
// does (call/livekit implements it).
type ElementCall interface {
	CallFoci(ctx context.Context, room id.RoomID) ([]matrixrtc.Transport, []matrixrtc.Member, error)
	FocusAccess(ctx context.Context, room id.RoomID, t matrixrtc.Transport) (lk.Access, error)
}

// Options configure the backend.
type Options struct {
	Deployments []config.LiveKitDeployment
	// RecordElementCall records unencrypted Element Call calls on a deployment's SFU here.
	RecordElementCall bool
	ElementCall       ElementCall
	// Store, when set, is where Egress uploads (output s3 or auto).
	Store Store
	// CommandPrefix is how commands start ("!"), for messages.
	CommandPrefix string
	// EndGrace is how long a recording outlives the last participant (default 30 s).
	EndGrace time.Duration
	// StopTimeout bounds how long a stop waits for Egress to finish its files (default 2 m).
	StopTimeout time.Duration
	// HTTPClient asks Meet's API (default: 10 s timeout).
	HTTPClient *http.Client
	// NewAPI makes a deployment's server API client (tests pass fakes).
	NewAPI func(d config.LiveKitDeployment, secret string) API
	// ResolveAlias asks the homeserver which room an alias names (aliases in
	// allowed_rooms); nil: alias grants allow nothing.
	ResolveAlias func(ctx context.Context, alias id.RoomAlias) (id.RoomID, error)
}

func (o *Options) fill() {
	if o.EndGrace <= 0 {
		o.EndGrace = 30 * time.Second
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 2 * time.Minute
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.NewAPI == nil {
		o.NewAPI = func(d config.LiveKitDeployment, secret string) API { return NewAPI(d.HTTPURL(), d.APIKey, secret) }
	}
	if o.CommandPrefix == "" {
		o.CommandPrefix = "!"
	}
}

// deployment is one configured server with its secret and client.
type deployment struct {
	config.LiveKitDeployment
	secret string
	api    API
	// remote: Egress uploads to the store (output s3, or auto with a store).
	remote bool
	// localDir is recordings.dir as Egress sees it.
	localDir string
}

// Backend is the call.Backend for LiveKit rooms recorded with Egress.
type Backend struct {
	mx   call.Matrix
	rec  *recorder.Recorder
	log  zerolog.Logger
	opts Options
	deps []*deployment

	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	active   map[id.RoomID]*Recording
	starting map[id.RoomID]bool
	byEgress map[string]*Recording
	byRoom   map[string]*Recording // deployment name + "/" + LiveKit room
	// pending are recordings the last run left interrupted, by Matrix room (state.go).
	pending map[id.RoomID]*pending

	// aliases resolves the aliases of allowed_rooms (access.go).
	aliases aliases
	// seen are the webhooks already taken, against replays (webhook.go).
	seen *replayGuard
}

var _ call.Backend = (*Backend)(nil)

// New checks the deployments (their secrets must be readable) and returns the backend.
func New(mx call.Matrix, rec *recorder.Recorder, opts Options, log zerolog.Logger) (*Backend, error) {
	opts.fill()
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{
		mx: mx, rec: rec, opts: opts, log: log.With().Str("backend", "egress").Logger(), ctx: ctx, cancel: cancel,
		active: map[id.RoomID]*Recording{}, starting: map[id.RoomID]bool{},
		byEgress: map[string]*Recording{}, byRoom: map[string]*Recording{}, pending: map[id.RoomID]*pending{},
		aliases: aliases{resolve: opts.ResolveAlias}, seen: newReplayGuard(webhookReplayWindow, maxSeenWebhooks),
	}
	for _, d := range opts.Deployments {
		secret, err := d.Secret()
		if err != nil {
			cancel()
			return nil, err
		}
		dep := &deployment{LiveKitDeployment: d, secret: secret, api: opts.NewAPI(d, secret), localDir: d.LocalDir}
		switch d.Output {
		case config.OutputS3:
			if opts.Store == nil {
				cancel()
				return nil, fmt.Errorf("livekit deployment %s: output s3 needs storage.s3", d.Name)
			}
			dep.remote = true
		case config.OutputAuto, "":
			dep.remote = opts.Store != nil
		}
		if dep.localDir == "" {
			dep.localDir = rec.Dir()
		}
		b.deps = append(b.deps, dep)
		switch {
		case d.AllowAll:
			b.log.Warn().Str("deployment", d.Name).Msg("allow_all: every Matrix room the bot is in may record every room of this LiveKit deployment")
		case len(d.AllowedRooms) == 0 && len(d.AllowedUsers) == 0:
			b.log.Info().Str("deployment", d.Name).Msgf("No Matrix room may record rooms of this LiveKit deployment yet (set %s or %s)",
				config.DeploymentKey(d.Name, "allowed_rooms"), config.DeploymentKey(d.Name, "allowed_users"))
		}
		for _, g := range d.AllowedRooms {
			if strings.HasPrefix(g.MatrixRoom, "#") && opts.ResolveAlias == nil {
				b.log.Warn().Str("deployment", d.Name).Str("alias", g.MatrixRoom).Msg("Aliases in allowed_rooms cannot be resolved here; this entry allows nothing")
			}
		}
	}
	if len(b.deps) == 0 {
		cancel()
		return nil, errors.New("no livekit deployments are configured")
	}
	b.pending = b.findInterrupted()
	for room, p := range b.pending {
		b.log.Info().Stringer("room_id", room).Str("folder", p.folder).Str("livekit_room", p.st.Room).Msg("An Egress recording was interrupted; it is taken over when the room's recording resumes")
	}
	return b, nil
}

// Name is "egress".
func (b *Backend) Name() string { return "egress" }

func (b *Backend) deployment(name string) *deployment {
	for _, d := range b.deps {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// Probe claims every !start that names a room (a Meet room URL or a LiveKit room name):
// what the user named wins over a call the room may also have. Without a name, it offers
// to record the room's unencrypted Element Call call when the operator asked for that and
// the call's SFU is one of the deployments.
func (b *Backend) Probe(ctx context.Context, room id.RoomID, args []string) call.Probe {
	req, err := parseArgs(args)
	if err != nil || req.ref != "" {
		return call.Probe{OK: true, Priority: 300, Reason: "a LiveKit room named in the command"}
	}
	if p := b.takePending(room, false); p != nil {
		return call.Probe{OK: true, Priority: 300, Reason: "the interrupted recording of " + p.st.What}
	}
	if !b.opts.RecordElementCall || b.opts.ElementCall == nil {
		return call.Probe{}
	}
	t, err := b.resolveElementCall(ctx, asker{room: room})
	if err != nil {
		b.log.Debug().Err(err).Stringer("room_id", room).Msg("Element Call not recorded with Egress")
		if errors.Is(err, errUseSubscriber) {
			return call.Probe{}
		}
		return call.Probe{Reason: "LiveKit Egress: " + err.Error() + "."}
	}
	return call.Probe{OK: true, Priority: 150, Reason: "Element Call on " + t.dep.Name + ", recorded with Egress"}
}

// Start records the room the command names (or the room's Element Call call) with Egress.
func (b *Backend) Start(ctx context.Context, req call.StartRequest) (call.Recording, error) {
	r, err := parseArgs(req.Args)
	if err != nil {
		return nil, usererr.Error{Msg: err.Error() + "."}
	}
	end, ok := call.BeginStart(&b.mu, b.starting, req.RoomID, func() bool { return b.active[req.RoomID] != nil })
	if !ok {
		return nil, usererr.Error{Msg: "A LiveKit room is already being recorded from here."}
	}
	defer end()
	if r.ref == "" {
		if p := b.takePending(req.RoomID, true); p != nil && (req.Resume == "" || req.Resume == p.folder) {
			return b.resume(ctx, req, p)
		}
	}
	var t *target
	who := asker{room: req.RoomID, by: req.By}
	if r.ref != "" {
		t, err = b.resolve(ctx, who, r.ref)
	} else {
		t, err = b.resolveElementCall(ctx, who)
	}
	if err != nil {
		var no *refusal
		if errors.As(err, &no) {
			b.log.Warn().Stringer("room_id", req.RoomID).Stringer("sender", req.By).Str("ref", clip(r.ref, 200)).Str("target", no.what).
				Strs("deployments", no.deps).Msg("Refused an Egress recording the config does not allow")
		}
		return nil, usererr.Error{Msg: "I cannot record that: " + err.Error() + "."}
	}
	t.by = req.By
	t.mode = r.mode
	if t.mode == "" {
		t.mode = t.dep.Mode()
	}
	key := t.dep.Name + "/" + t.room
	b.mu.Lock()
	other := b.byRoom[key]
	b.mu.Unlock()
	if other != nil {
		return nil, usererr.Error{Msg: fmt.Sprintf("%s is already being recorded (from another Matrix room).", capitalize(t.what))}
	}
	sess, err := b.rec.Start(ctx, recorder.CallInfo{CallID: "egress-" + t.dep.Name + "-" + t.room, RoomID: string(req.RoomID), Kind: recorder.KindEgress})
	if err != nil {
		return nil, fmt.Errorf("create the call folder: %w", err)
	}
	rec := newRecording(b, t, req.RoomID, sess)
	for u, since := range req.OptedOut {
		rec.optOut[u] = true
		sess.SetOptOut(string(u), true, since)
	}
	b.mu.Lock()
	b.active[req.RoomID] = rec
	b.byRoom[key] = rec
	b.mu.Unlock()
	if err := rec.begin(ctx, false); err != nil {
		rec.abandon(err)
		var ue usererr.Error
		if errors.As(err, &ue) {
			return nil, ue
		}
		return nil, usererr.Error{Msg: fmt.Sprintf("LiveKit Egress could not start recording %s: %s.", t.what, err)}
	}
	rec.log.Info().Str("mode", t.mode).Bool("remote", t.dep.remote).Msg("Recording a LiveKit room with Egress")
	return rec, nil
}

// resume takes over a recording the last run left: the same folder (the manifest lists
// the interruption), the egresses Egress kept running, and new ones for tracks published
// meanwhile.
func (b *Backend) resume(ctx context.Context, req call.StartRequest, p *pending) (call.Recording, error) {
	d := b.deployment(p.st.Deployment)
	t := &target{dep: d, room: p.st.Room, mode: p.st.Mode, what: p.st.What, members: p.st.Members, slug: p.st.Slug, by: id.UserID(p.st.StartedBy)}
	// The config may have changed since: the recording goes on only if it is still allowed
	// for the room and the user who started it. If not, Egress is told to stop, so taking
	// a permission away really ends the recording.
	if !ownCall(req.RoomID, t.room) && !b.mayRecord(ctx, d, asker{room: req.RoomID, by: t.by}, t.room, t.slug) {
		b.log.Warn().Stringer("room_id", req.RoomID).Str("folder", p.folder).Str("target", t.what).
			Msg("An interrupted Egress recording is no longer allowed by the config; stopping its egresses instead of taking it over")
		b.stopLeftovers(ctx, d, p.st)
		return nil, usererr.Error{Msg: fmt.Sprintf("the bot's config no longer allows this room to record %s, so I stopped it (the operator can allow it again in %s; this room is %s)",
			t.what, deploymentKeys([]string{d.Name}, "allowed_rooms"), req.RoomID)}
	}
	key := d.Name + "/" + t.room
	b.mu.Lock()
	other := b.byRoom[key]
	b.mu.Unlock()
	if other != nil {
		return nil, usererr.Error{Msg: fmt.Sprintf("%s is already being recorded (from another Matrix room).", capitalize(t.what))}
	}
	sess, err := b.rec.Start(recorder.WithResume(ctx, p.folder), recorder.CallInfo{CallID: "egress-" + d.Name + "-" + t.room, RoomID: string(req.RoomID), Kind: recorder.KindEgress})
	if err != nil {
		return nil, fmt.Errorf("resume the call folder: %w", err)
	}
	rec := newRecording(b, t, req.RoomID, sess)
	for u := range req.OptedOut {
		rec.optOut[u] = true // the resumed manifest lists the opt-outs already
	}
	b.mu.Lock()
	b.active[req.RoomID] = rec
	b.byRoom[key] = rec
	b.mu.Unlock()
	if sess.Resumed() {
		rec.adopt(ctx, p.st)
	}
	if err := rec.begin(ctx, true); err != nil {
		rec.abandon(err)
		return nil, usererr.Error{Msg: fmt.Sprintf("LiveKit Egress could not go on recording %s: %s.", t.what, err)}
	}
	rec.log.Info().Bool("same_folder", sess.Resumed()).Msg("Took an interrupted Egress recording over")
	return rec, nil
}

// track routes an egress's webhooks to its recording.
func (b *Backend) track(egressID string, r *Recording) {
	b.mu.Lock()
	b.byEgress[egressID] = r
	b.mu.Unlock()
}

// finished forgets a recording that ended.
func (b *Backend) finished(r *Recording) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.active[r.room] == r {
		delete(b.active, r.room)
	}
	if key := r.t.dep.Name + "/" + r.t.room; b.byRoom[key] == r {
		delete(b.byRoom, key)
	}
	for id, rec := range b.byEgress {
		if rec == r {
			delete(b.byEgress, id)
		}
	}
}

// HandleEvent: Matrix events do not concern Egress recordings.
func (b *Backend) HandleEvent(context.Context, *event.Event) {}

// Close ends the backend's background work (the bot stops recordings first).
func (b *Backend) Close(context.Context) error {
	b.cancel()
	return nil
}

// localPath is where Egress writes a file of a call folder when it writes locally.
func (d *deployment) localPath(folder, file string) string {
	return filepath.Join(d.localDir, filepath.Base(folder), file)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Package lifecycle runs what happens to a recording around the recorder: its rows in the
// state database as it is written, the copies in object storage, the limits that stop it
// (length, size, disk, recordings at once), the summary with links in the room and its
// retries, retention and deletion, and what a restart finds and resumes. It follows the
// recorder through recorder.Hooks and talks to people only through Chat, and to the calls
// only through Calls: it knows neither Matrix clients nor call backends.
//
// Sub-packages: upload (copies to object storage and their confirmation), download (the
// recorder's own links).
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/lifecycle/download"
	"github.com/matrix-recorder/matrix-recorder/lifecycle/upload"
	"github.com/matrix-recorder/matrix-recorder/metrics"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/serial"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/datadir"
	"github.com/matrix-recorder/matrix-recorder/storage/s3store"
)

// evidenceWaitMax is how long a summary waits for the bucket's notification of a copy
// another program uploaded, after the copy was confirmed by reading it back.
const evidenceWaitMax = 5 * time.Second

// Options configure a Lifecycle.
type Options struct {
	Chat  Chat
	Calls Calls
	// Ready is closed after the chat's first sync: what the last run left is told and
	// resumed then, and health waits for it.
	Ready <-chan struct{}
	// Busy, when set, reports whether a recording is being started in a room (on a shared
	// database, the room's lease is kept while it is; fleet.go).
	Busy func(room id.RoomID) bool
	Log  zerolog.Logger
}

// Lifecycle follows every recording of one recorder.
type Lifecycle struct {
	cfg config.Config
	log zerolog.Logger
	// root is the logger given, for the sub-packages' own components (log carries
	// "lifecycle", and a key twice makes JSON lines ambiguous).
	root  zerolog.Logger
	chat  Chat
	calls Calls
	ready <-chan struct{}

	db *storage.DB
	// instance is this instance's id and keeper its claim on a shared database (nil
	// with SQLite).
	instance string
	keeper   *storage.LeaseKeeper
	claimTTL time.Duration // instanceLeaseTTL (tests shorten it)
	// fleet shares the work with the other instances on a shared database (nil with
	// SQLite); busy is Options.Busy.
	fleet *fleet
	busy  func(room id.RoomID) bool
	// once holds the once-only actions on recordings running here (once.go).
	once onceActions
	// removedLook is when sweepRemoved last looked for recordings deleted elsewhere
	// (zero: not yet; only the retention loop touches it).
	removedLook time.Time
	// pausedHere lists the folders of recordings paused by this run's clean stop (lc.mu):
	// on a shared database they are handed over to the other instances (adopt.go).
	pausedHere []string
	// rows is where the hooks' row writes go: the database (tests put a gate in front).
	rows rowStore
	s3   *s3store.Store // nil without storage.s3
	// signer signs the recorder's own download links; nil without http.listen.
	signer *download.Signer
	up     *upload.Uploader // nil without storage.s3
	egress *EgressStore     // nil without storage.s3
	m      *metrics.Metrics
	now    func() time.Time
	// statfs reports the free bytes of the recordings disk (tests replace it).
	statfs func(dir string) (int64, error)
	// probes try writing into data_dir and recordings.dir for /healthz (health.go).
	probesOnce sync.Once
	probes     struct{ data, recordings *writeProbe }

	ctx    context.Context // ends at shutdown; background work watches it
	cancel context.CancelFunc
	// shuttingDown is set when the recorder begins to stop (Run's context ends or
	// Shutdown is called): recordings that end then ended with it.
	shuttingDown atomic.Bool
	wg           sync.WaitGroup
	// telling counts the notices about live recordings being posted (tests wait for them).
	telling sync.WaitGroup
	// drainCtx ends when shutdown begins: summaries stop waiting for uploads then.
	drainCtx context.Context
	drain    context.CancelFunc
	posting  counter // summaries not posted yet

	mu   sync.Mutex
	live map[string]*liveRec // by folder name
	// queues hold the row writes of each recording (by folder name) until they are done.
	queues map[string]*serial.Loop
	// inviters caches who invited the bot into each room (recordings.max_per_inviter).
	inviters  map[id.RoomID]id.UserID
	manifests sync.Mutex // serialises manifest rewrites of finished folders
	// delivering holds the recordings whose delivery runs in this process, with what
	// ends it (the recording's deletion does).
	delivering map[string]context.CancelFunc
	// notifyRetry paces the retries of summaries that could not be posted.
	notifyRetry map[string]*retryState
	// sendBackoff is the pause between attempts to post a message, uploadPoll how often a
	// posted summary looks at uploads that are still going (tests shorten them).
	sendBackoff time.Duration
	uploadPoll  time.Duration
	// rowRetry is the first pause before a refused row write is tried again (rowretry.go;
	// tests shorten it).
	rowRetry time.Duration
	startup  []startupItem // what the last run left, handled after the first sync
	// marks keeps the bot's display name in each room in line with its recordings.
	marks *nameMarks
}

// liveRec is a recording in progress.
type liveRec struct {
	sess   *recorder.Session
	folder string
	roomID id.RoomID
	kind   recorder.Kind
	// inviter invited the bot into the room ("" unknown): recordings.max_per_inviter.
	inviter id.UserID
	// id is the recording's row, set by the queue once the row exists.
	id string
	// The start notice, edited with progress.
	startEvent    id.EventID
	startText     string
	startMentions []id.UserID
	lastEdit      time.Time
	// Limits.
	warnedDuration, warnedSize bool
	stopping                   bool
	// stopReason is why the recording is ending, once a limit or a person said.
	stopReason StopReason
	// failing counts the tracks that cannot write now; toldFailing says the room heard of
	// the current outage.
	failing     int
	toldFailing bool
	// completed lists the files whose completion the queue has written, and evidence
	// how the store's notification confirmed copies of files not completed yet.
	completed map[string]bool
	evidence  map[string]string
	// pending holds the row writes the database refused, to write again (rowretry.go;
	// only the recording's queue touches it).
	pending pendingRows
}

// New opens the state database and object storage. Nothing runs before Run.
func New(ctx context.Context, cfg config.Config, o Options) (*Lifecycle, error) {
	lc := &Lifecycle{
		cfg: cfg, log: o.Log.With().Str("component", "lifecycle").Logger(), root: o.Log, chat: o.Chat, calls: o.Calls, ready: o.Ready,
		now: time.Now, statfs: freeBytes,
		live: map[string]*liveRec{}, queues: map[string]*serial.Loop{}, inviters: map[id.RoomID]id.UserID{},
		delivering: map[string]context.CancelFunc{}, notifyRetry: map[string]*retryState{},
		sendBackoff: 2 * time.Second, uploadPoll: 30 * time.Second, claimTTL: instanceLeaseTTL, busy: o.Busy,
	}
	lc.marks = newNameMarks(lc)
	if lc.ready == nil {
		ready := make(chan struct{})
		close(ready)
		lc.ready = ready
	}
	lc.ctx, lc.cancel = context.WithCancel(context.WithoutCancel(ctx))
	lc.drainCtx, lc.drain = context.WithCancel(lc.ctx)
	db, err := openDatabase(ctx, cfg, o.Log)
	if err != nil {
		return nil, err
	}
	lc.db, lc.rows = db, db
	fail := func(err error) (*Lifecycle, error) {
		lc.cancel()
		return nil, errors.Join(err, lc.releaseClaim(ctx), db.Close())
	}
	if err := lc.claimDatabase(ctx); err != nil {
		return fail(err)
	}
	if cfg.HTTP.Listen != "" {
		if lc.signer, err = download.LoadSigner(cfg.DataDir); err != nil {
			return fail(err)
		}
	}
	lc.m = metrics.New(lc.liveStats, func() (int64, bool) {
		free, err := lc.statfs(cfg.Recordings.Dir)
		return free, err == nil
	})
	if s3c := cfg.Storage.S3; s3c.Enabled() {
		access, secret, err := s3c.Credentials()
		if err != nil {
			return fail(err)
		}
		lc.s3, err = s3store.New(s3store.Config{
			Endpoint: s3c.Endpoint, Bucket: s3c.Bucket, Region: s3c.Region, Prefix: s3c.Prefix,
			AccessKey: access, SecretKey: secret, PathStyle: s3c.PathStyle, TLS: s3c.TLS,
		})
		if err != nil {
			return fail(err)
		}
		dir, err := filepath.Abs(cfg.Recordings.Dir)
		if err != nil {
			return fail(err)
		}
		var evidenceWait time.Duration
		if cfg.HTTP.Listen != "" && cfg.HTTP.WebhookToken != "" {
			evidenceWait = evidenceWaitMax // the bucket's notifications reach the recorder
		}
		lc.up = upload.New(lc.ctx, db, lc.s3, upload.Options{
			Dir: dir, PartSize: int64(s3c.PartSize), Log: lc.root, EvidenceWait: evidenceWait,
			OnConfirmed: lc.uploadConfirmed, OnEvidence: lc.evidence,
			OnFailure: func(*storage.Upload, error) { lc.m.UploadFailures.Inc() },
			OnSent:    func(n int64) { lc.m.UploadedBytes.Add(float64(n)) },
			TailEvery: lc.tailEvery(),
		})
		lc.egress = &EgressStore{lc: lc}
	}
	return lc, nil
}

// Metrics are the recorder's metrics (the lifecycle counts most of them).
func (lc *Lifecycle) Metrics() *metrics.Metrics { return lc.m }

// StateFiles are the files the lifecycle keeps in data_dir (for the start-up check of
// their modes).
func StateFiles() []string {
	return []string{storage.FileName, download.KeyFile, datadir.InstanceFile, claimFile}
}

// Run starts the background work: limits, progress edits, retention, retries of
// summaries, and what the last run left (after the chat's first sync).
func (lc *Lifecycle) Run(ctx context.Context) {
	if lc.s3 != nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := lc.s3.Check(cctx); err != nil {
			lc.log.Error().Err(err).Msg("Object storage is not usable yet; files stay on disk and uploads are retried")
		}
		cancel()
	}
	lc.goLoop("limits", lc.limitsInterval(), lc.checkLimits)
	if lc.cfg.Recordings.ProgressInterval.D() > 0 {
		lc.goLoop("progress", lc.cfg.Recordings.ProgressInterval.D()/4, lc.progress)
	}
	lc.goLoop("retention", lc.retentionInterval(), lc.retention)
	lc.goLoop("renotify", renotifyEvery, lc.renotify)
	if lc.fleet != nil {
		lc.goLoop("fleet", lc.fleet.ttl/3, func(ctx context.Context) {
			lc.fleet.sweep(ctx)
			lc.fleet.snapshot(ctx)
		})
		lc.goLoop("once", lc.fleet.onceTTL/3, lc.fleet.onceRound)
		lc.goLoop("adopt", adoptEvery, func(ctx context.Context) {
			select {
			case <-lc.ready:
			default:
				return // the backends resume recordings after the first sync
			}
			lc.fleet.adopt(ctx)
		})
	}
	context.AfterFunc(ctx, func() { lc.shuttingDown.Store(true) })
	lc.marks.mu.Lock()
	loaded := lc.marks.ready
	lc.marks.mu.Unlock()
	if !loaded {
		lc.marks.load(ctx)
	}
	lc.wg.Add(1)
	go func() {
		defer lc.wg.Done()
		lc.marks.run(lc.ctx)
	}()
	lc.wg.Add(1)
	go func() {
		defer lc.wg.Done()
		select {
		case <-lc.ready:
		case <-lc.ctx.Done():
			return
		}
		lc.afterFirstSync(lc.ctx)
	}()
}

// goLoop runs fn every interval until shutdown.
func (lc *Lifecycle) goLoop(name string, every time.Duration, fn func(ctx context.Context)) {
	lc.wg.Add(1)
	go func() {
		defer lc.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-lc.ctx.Done():
				return
			case <-t.C:
				func() {
					defer func() {
						if r := recover(); r != nil {
							lc.log.Error().Any("panic", r).Str("loop", name).Msg("Background task panicked")
						}
					}()
					fn(lc.ctx)
				}()
			}
		}
	}()
}

// Shutdown stops the background work after the recordings were finalised: the rows the
// hooks queued are written, summaries being posted get until ctx ends, and uploads keep
// their progress in the database and continue on the next start.
func (lc *Lifecycle) Shutdown(ctx context.Context) error {
	lc.shuttingDown.Store(true)
	lc.drain()
	for lc.posting.n() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	var errs []error
	if err := lc.waitQueues(ctx); err != nil {
		errs = append(errs, err)
	}
	// Rooms whose recording ended get their name back now; paused ones keep the mark.
	lc.marks.flush(ctx)
	if lc.fleet != nil {
		// The other instances take the paused recordings over (the uploader still runs).
		lc.fleet.handOver(ctx)
	}
	lc.cancel()
	if lc.up != nil {
		errs = append(errs, lc.up.Close(ctx))
	}
	done := make(chan struct{})
	go func() {
		lc.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, errors.New("the recording lifecycle's tasks did not stop in time"))
	}
	errs = append(errs, lc.releaseClaim(ctx), lc.db.Close())
	return errors.Join(errs...)
}

// SetInviter records who invited the bot into a room (recordings.max_per_inviter).
func (lc *Lifecycle) SetInviter(ctx context.Context, room id.RoomID, inviter id.UserID) error {
	if err := lc.db.SetInviter(ctx, string(room), string(inviter)); err != nil {
		return err
	}
	lc.mu.Lock()
	lc.cacheInviterLocked(room, inviter)
	lc.mu.Unlock()
	return nil
}

// LockManifests serialises rewrites of finished manifests with the lifecycle, which
// records uploads in them; the returned function unlocks.
func (lc *Lifecycle) LockManifests() func() {
	lc.manifests.Lock()
	return lc.manifests.Unlock
}

// dbCtx bounds one database call of background work.
func (lc *Lifecycle) dbCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(lc.ctx), 10*time.Second)
}

func freeBytes(dir string) (int64, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(fs.Bavail) * int64(fs.Bsize), nil
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// liveStats sums what the recordings in progress have written (metrics).
func (lc *Lifecycle) liveStats() metrics.Live {
	lc.mu.Lock()
	sessions := make([]*recorder.Session, 0, len(lc.live))
	for _, lr := range lc.live {
		sessions = append(sessions, lr.sess)
	}
	lc.mu.Unlock()
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

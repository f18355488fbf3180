// Package bot is the Matrix side of the recorder: login and end-to-end encryption, the sync
// loop, invites, commands, notices, and routing call events to the call backends.
package bot

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/bot/command"
	"github.com/matrix-recorder/matrix-recorder/bot/e2ee"
	"github.com/matrix-recorder/matrix-recorder/call/egress"
	"github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/onetoone"
	"github.com/matrix-recorder/matrix-recorder/call/rooms"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/httpserver"
	"github.com/matrix-recorder/matrix-recorder/lifecycle"
	"github.com/matrix-recorder/matrix-recorder/metrics"
	"github.com/matrix-recorder/matrix-recorder/postcall"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage/cryptostore"
	"github.com/matrix-recorder/matrix-recorder/storage/datadir"
	"github.com/matrix-recorder/matrix-recorder/storage/lockfile"
)

// HTTP retries of every homeserver request (mautrix): network errors, 502-504 and 429.
const (
	httpRetries    = 4
	httpBackoff    = 2 * time.Second
	maxHTTPBackoff = time.Minute
)

// Bot is one logged-in recorder account.
type Bot struct {
	cfg     config.Config
	log     zerolog.Logger
	version string

	client *mautrix.Client
	crypto *cryptohelper.CryptoHelper
	rtc    *rtc.Factory
	rec    *recorder.Recorder
	rooms  *rooms.Rooms      // the backends' recordings, one per room (rooms.go)
	lk     *livekit.Backend  // the backend that answers direct MatrixRTC calls (livekit_dm.go)
	o2o    *onetoone.Backend // the backend of legacy 1:1 calls (backends.go)
	cmds   *command.Processor
	post   *postcall.Manager
	dms    directRooms
	ice    *rtc.ICEServers      // STUN/TURN for calls (ice.go)
	lc     *lifecycle.Lifecycle // rows, uploads, limits, summaries, retention (chat.go is its side here)
	lock   *lockfile.Lock       // data_dir's lock, held until Run returns
	egress *egress.Backend      // LiveKit Egress (egress_backend.go); nil without deployments

	// shared is this instance's device's crypto store in a fleet's database (nil with
	// SQLite); its connections close with crypto.
	shared *cryptostore.Store
	// instance is this instance's id in a fleet ("" with SQLite).
	instance string

	// roomCrypto is client.Crypto: crypto with each room's members loaded before its
	// first message there.
	roomCrypto *e2ee.MembersFirst

	// startedAt: messages older than this are history, not commands.
	startedAt time.Time

	// Ready is closed after the first successful sync.
	ready     chan struct{}
	readyOnce sync.Once
	// synced beats after every successful sync (/healthz).
	synced *httpserver.Heartbeat
	// responses counts the sync responses processed (syncLoop's backoff starts over after
	// one).
	responses atomic.Uint64
}

// Options for New that are not in the config file.
type Options struct {
	Version string
	// Build names the build for the metrics (build_info); empty fields are read from the
	// binary.
	Build metrics.BuildInfo
	// ReadyHook, if set, is called after the first sync (demo and tests).
	Logger zerolog.Logger
}

// New logs in (or reuses the stored device), sets up encryption and the recorder. A
// data_dir another recorder runs on is refused with a *lockfile.HeldError.
func New(ctx context.Context, cfg config.Config, opts Options) (*Bot, error) {
	log := opts.Logger
	b := &Bot{cfg: cfg, log: log, version: opts.Version, startedAt: time.Now(), ready: make(chan struct{}),
		synced: httpserver.NewHeartbeat("successful sync with the homeserver", syncMaxAge, nil)}
	lock, err := datadir.Lock(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	b.lock = lock
	started := false
	defer func() {
		if !started {
			_ = lock.Release()
		}
	}()
	checkModes(log, cfg)
	lc, err := lifecycle.New(ctx, cfg, lifecycle.Options{Chat: botChat{b}, Calls: botCalls{b}, Ready: b.ready, Log: log, Busy: b.startingIn})
	if err != nil {
		return nil, err
	}
	b.lc = lc
	lc.Metrics().SetBuildInfo(opts.Build)
	defer func() {
		if !started {
			_ = lc.Shutdown(context.WithoutCancel(ctx))
		}
	}()
	// The recorder, with the folders a crash left repaired and taken over.
	if b.rec, err = lc.NewRecorder(ctx, opts.Version, log); err != nil {
		return nil, err
	}

	if err := b.login(ctx); err != nil {
		return nil, err
	}
	// Clients that share call media keys only with verified devices need the device cross-signed.
	crossSign := func() { e2ee.SetupCrossSigning(ctx, b.client, b.crypto.Machine(), b.cfg.Matrix, b.cfg.DataDir, b.log) }
	if b.shared == nil {
		crossSign()
	} else if err := b.shared.WithCrossSigningLock(ctx, crossSign); err != nil {
		return nil, errors.Join(err, b.crypto.Close())
	}
	if b.shared != nil && b.cfg.Matrix.RecoveryKey == "" && b.cfg.Matrix.CrossSigning {
		b.log.Warn().Msg("In a fleet every instance is a device of its own and needs matrix.recovery_key to cross-sign it " +
			"(the first instance that sets up cross-signing writes the key to its data_dir/" + e2ee.RecoveryKeyFile + "): " +
			"put that key in every instance's matrix.recovery_key")
	}
	f, err := rtc.NewFactory(rtc.Settings{
		IncludeLoopback: cfg.WebRTC.IncludeLoopback,
		UDPPortMin:      cfg.WebRTC.UDPPortMin,
		UDPPortMax:      cfg.WebRTC.UDPPortMax,
		UDPPort:         cfg.WebRTC.UDPPort,
		PublicIPs:       cfg.WebRTC.PublicIPs,
		Interfaces:      cfg.WebRTC.Interfaces,
		ICETimeout:      cfg.Calls.ICETimeout.D(),
	}, log.With().Str("component", "webrtc").Logger())
	if err != nil {
		return nil, errors.Join(err, b.crypto.Close())
	}
	b.rtc, b.ice = f, b.newICEServers()
	backends, err := b.newBackends()
	if err != nil {
		return nil, errors.Join(err, b.rtc.Close(), b.crypto.Close())
	}
	b.rooms = newRooms(b, backends)
	if outs, err := lc.OptOuts(ctx); err != nil {
		log.Error().Err(err).Msg("Opt-outs from before the restart are not known; those who opted out are recorded until they opt out again")
	} else {
		b.rooms.LoadOptOuts(outs)
	}
	if b.post, err = b.newPostcall(); err != nil {
		return nil, errors.Join(err, b.rtc.Close(), b.crypto.Close())
	}
	b.cmds = newCommands(b)
	started = true
	return b, nil
}

// login creates the client and the crypto helper. With a password the device id is kept in
// the crypto store, so restarts reuse the same device and its keys.
func (b *Bot) login(ctx context.Context) error {
	mc := b.cfg.Matrix
	client, err := mautrix.NewClient(mc.Homeserver, id.UserID(mc.UserID), "")
	if err != nil {
		return fmt.Errorf("create matrix client: %w", err)
	}
	// The crypto helper (created below) names its own component ("crypto") on a logger
	// derived from client.Log: it gets one without ours, or its lines would carry the key
	// twice. Both drop mautrix's request lines (quietRequestLog).
	client.Log = b.log.Hook(requestLogFilter{})
	matrixLog := b.log.With().Str("component", "matrix").Logger()
	// Every request is retried on network errors, 502-504 and 429 (honouring Retry-After),
	// with exponential backoff, so a homeserver that restarts or rate-limits loses nothing.
	client.DefaultHTTPRetries = httpRetries
	client.DefaultHTTPBackoff = httpBackoff
	client.MaxHTTPBackoff = maxHTTPBackoff
	syncer := mautrix.NewDefaultSyncer()
	// Let every event through: call events are parsed by our own structs from the raw
	// content, and one that mautrix cannot parse must not vanish silently.
	syncer.ParseErrorHandler = func(evt *event.Event, err error) bool {
		b.log.Debug().Err(err).Str("type", evt.Type.Type).Msg("Event content did not parse with mautrix types")
		return true
	}
	client.Syncer = &batchSyncer{DefaultSyncer: syncer, bot: b}
	b.client = client

	store, pickle, err := b.openCryptoStore(ctx)
	if err != nil {
		return err
	}
	helper, err := cryptohelper.NewCryptoHelper(client, pickle, store)
	if err != nil {
		if b.shared != nil {
			err = errors.Join(err, b.shared.DB.Close())
		}
		return fmt.Errorf("open crypto store: %w", err)
	}
	if b.shared != nil {
		helper.DBAccountID = b.shared.AccountID
	}
	client.Log = matrixLog
	quietRequestLog(client, client.Log)
	if mc.AccessToken != "" {
		client.AccessToken = mc.AccessToken
		who, err := client.Whoami(ctx)
		if err != nil {
			return errors.Join(fmt.Errorf("check access token: %w", err), helper.Close())
		}
		if who.UserID != client.UserID {
			return errors.Join(fmt.Errorf("access token belongs to %s, not %s", who.UserID, client.UserID), helper.Close())
		}
		client.DeviceID = who.DeviceID
		if err := b.notAnotherInstance(ctx, who.DeviceID); err != nil {
			return errors.Join(err, helper.Close())
		}
	} else {
		device := id.DeviceID(mc.DeviceID)
		if b.shared != nil && b.shared.DeviceID != "" {
			device = b.shared.DeviceID // the crypto store logs in as it again
		}
		if err := b.notAnotherInstance(ctx, device); err != nil {
			return errors.Join(err, helper.Close())
		}
		helper.LoginAs = &mautrix.ReqLogin{
			Type:                     mautrix.AuthTypePassword,
			Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: mc.UserID},
			Password:                 mc.Password,
			DeviceID:                 id.DeviceID(mc.DeviceID),
			InitialDeviceDisplayName: mc.DeviceName,
		}
	}
	if err := helper.Init(ctx); err != nil {
		return errors.Join(fmt.Errorf("log in and set up encryption: %w", err), helper.Close())
	}
	// The helper made its crypto store the sync store: a sync position it fails to write
	// must not be skipped past (syncstore.go).
	client.Store = newSyncPosition(client.Store)
	if b.shared != nil {
		if err := b.shared.SetDevice(ctx, client.DeviceID); err != nil {
			return errors.Join(err, helper.Close())
		}
		b.lc.Metrics().SetInstance(b.instance, client.DeviceID.String())
		b.log = b.log.With().Str("instance", b.instance).Logger()
	}
	helper.Machine().IgnorePostDecryptionParseErrors = true
	helper.DecryptErrorCallback = func(evt *event.Event, err error) {
		b.lc.Metrics().DecryptionFailures.Inc()
		b.log.Warn().Err(err).Stringer("room_id", evt.RoomID).Stringer("event_id", evt.ID).Stringer("sender", evt.Sender).Msg("Could not decrypt event")
	}
	b.roomCrypto = e2ee.NewMembersFirst(helper, client, b.log)
	client.Crypto = b.roomCrypto
	b.crypto = helper
	b.log = b.log.With().Stringer("device_id", client.DeviceID).Logger()
	b.log.Info().Stringer("user_id", client.UserID).Msg("Logged in")
	return nil
}

// openCryptoStore returns the crypto store for cryptohelper.NewCryptoHelper and its pickle
// key: with SQLite, data_dir/crypto.db and the pickle key there (or configured); in a
// fleet, this instance's device's store in the shared PostgreSQL database (cryptostore.Open),
// so that the instance stays the same device on a new data_dir and no two instances share
// one.
func (b *Bot) openCryptoStore(ctx context.Context) (any, []byte, error) {
	if b.cfg.Database.Fleet() {
		inst, err := datadir.InstanceID(b.cfg.DataDir, b.cfg.Instance.ID)
		if err != nil {
			return nil, nil, err
		}
		s, err := cryptostore.Open(ctx, b.cfg.Database.URI, id.UserID(b.cfg.Matrix.UserID), inst, b.cfg.Matrix.PickleKey, b.log)
		if err != nil {
			return nil, nil, err
		}
		b.shared, b.instance = s, inst
		if s.DeviceID == "" && fileExists(filepath.Join(b.cfg.DataDir, e2ee.CryptoDBName)) {
			b.log.Warn().Str("instance", inst).Msg("data_dir holds the crypto store of a recorder that ran on SQLite (" + e2ee.CryptoDBName + "), which is not used on PostgreSQL: " +
				"this instance becomes a new device. To keep the old device and what was recorded, stop it and run matrix-recorder copy-database into an empty database (docs/fleet.md)")
		}
		return s.DB, s.PickleKey, nil
	}
	pickle, err := e2ee.PickleKey(b.cfg.Matrix.PickleKey, b.cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	cryptoDB := filepath.Join(b.cfg.DataDir, e2ee.CryptoDBName)
	if err := datadir.CreatePrivate(cryptoDB); err != nil {
		return nil, nil, fmt.Errorf("create crypto store: %w", err)
	}
	return cryptoDB, pickle, nil
}

// notAnotherInstance refuses, in a fleet, a device another instance of the account is.
func (b *Bot) notAnotherInstance(ctx context.Context, device id.DeviceID) error {
	if b.shared == nil {
		return nil
	}
	return b.shared.SameDevice(ctx, device)
}

// UserID is the bot's Matrix id.
func (b *Bot) UserID() id.UserID { return b.client.UserID }

// DeviceID is the bot's device.
func (b *Bot) DeviceID() id.DeviceID { return b.client.DeviceID }

// Ready is closed once the first sync has been processed.
func (b *Bot) Ready() <-chan struct{} { return b.ready }

// RecordingsDir is where call folders go.
func (b *Bot) RecordingsDir() string { return b.rec.Dir() }

// Run syncs until ctx ends, then hangs up every call and finalises every recording
// (bounded by shutdownTimeout).
func (b *Bot) Run(ctx context.Context, shutdownTimeout time.Duration) error {
	b.registerHandlers()
	b.lc.Run(ctx)
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	httpDone, herr := b.startHTTP(httpCtx)
	if herr != nil {
		return errors.Join(herr, b.lc.Shutdown(ctx), b.rtc.Close(), b.crypto.Close(), b.lock.Release())
	}

	syncErr := make(chan error, 1)
	go func() { syncErr <- b.syncLoop(ctx) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-syncErr:
	}
	b.client.StopSync()
	b.log.Info().Msg("Stopping: hanging up calls and finalising recordings")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	// In a fleet, another instance takes the group calls over before they are left here.
	b.lc.HandOverLive(sctx)
	if serr := b.rooms.Shutdown(sctx); serr != nil {
		err = errors.Join(err, serr)
	}
	if serr := b.post.Close(sctx); serr != nil {
		err = errors.Join(err, serr)
	}
	if serr := b.lc.Shutdown(sctx); serr != nil {
		err = errors.Join(err, serr)
	}
	// The HTTP server stays up until here: Egress's webhooks and the bucket's
	// notifications matter while recordings end and their summaries go out.
	stopHTTP()
	if serr := httpserver.Wait(sctx, httpDone); serr != nil {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, b.rtc.Close(), b.crypto.Close(), b.lock.Release())
}

// The pause after a sync that failed doubles from minSyncBackoff up to maxSyncBackoff, no
// longer than the recorder waits before it writes the rows that waited for the database.
const (
	minSyncBackoff = time.Second
	maxSyncBackoff = 10 * time.Second
)

// syncLoop keeps syncing, backing off on errors, until ctx ends. mautrix retries the
// homeserver's errors itself; what ends a sync here is mostly the database (the sync
// position cannot be read or stored), and nothing is handled until it answers again, so
// the pause stays short (maxSyncBackoff) and starts over once a response was processed.
func (b *Bot) syncLoop(ctx context.Context) error {
	backoff := minSyncBackoff
	for {
		before := b.responses.Load()
		err := b.client.SyncWithContext(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var httpErr mautrix.HTTPError
		if errors.As(err, &httpErr) && httpErr.RespError != nil && httpErr.RespError.ErrCode == mautrix.MUnknownToken.ErrCode {
			return fmt.Errorf("the homeserver no longer accepts the bot's access token: %w", err)
		}
		if b.responses.Load() != before {
			backoff = minSyncBackoff // it synced for a while: this is a new failure
		}
		b.log.Warn().Err(err).Dur("retry_in", backoff).Msg("Sync failed")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxSyncBackoff)
	}
}

// startingIn reports whether a recording of room is running or being started here (a
// call being answered, a backend joining): the lifecycle keeps the room's lease on a
// shared database meanwhile.
func (b *Bot) startingIn(room id.RoomID) bool {
	return b.rooms != nil && b.rooms.Recording(room)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	protologger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	lk "github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/internal/devjwt"
	"github.com/matrix-recorder/matrix-recorder/internal/devlivekit"
	"github.com/matrix-recorder/matrix-recorder/internal/lkpeer"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Part 3: the LiveKit path. N participants of an Element Call call (MatrixRTC session
// memberships, tokens from the JWT service) publish Opus and 1 Mbit/s VP8 on the harness's
// livekit-server; someone types !start and the bot subscribes to every track through the
// SFU, as it does for Element Call.

type lkRow struct {
	Publishers int
	Seconds    float64
	CPU        time.Duration // the bot during the window
	SenderCPU  time.Duration // this process (the publishers)
	SFUCPU     time.Duration // livekit-server
	RSS        int64
	RSSIdle    int64 // the bot in the room, before !start
	Received   uint64
	Lost       uint64
	Dropped    uint64
	FinalAfter time.Duration // from !stop until the manifest says finished
	Files      fileCheck
	Load       loadSpan
	Profile    []string
}

func (r lkRow) tracks() int { return 2 * r.Publishers }

func (r lkRow) cpuPerTrack() time.Duration {
	return time.Duration(float64(r.CPU) / float64(r.tracks()) / r.Seconds)
}

// lkBench is the LiveKit environment: Dendrite with federation (the JWT service verifies
// OpenID tokens through it), livekit-server, the JWT service and the bot.
type lkBench struct {
	work  string
	hs    *devhs.Server
	sfu   *devlivekit.Server
	jwt   *devjwt.Service
	bot   *botProc
	audio *caller.Media
	video *caller.Media
	log   logFunc
	steps int
}

func startLKBench(ctx context.Context, work string, bins binaries, maxPublishers int, pprof bool, logf logFunc) (*lkBench, error) {
	b := &lkBench{work: work, log: logf}
	// The publishers' pion logs (server-sdk-go's global logger) would fill the bench's output.
	lksdk.SetLogger(protologger.GetDiscardLogger())
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	var err error
	if b.video, err = busyVP8(ctx, work); err != nil {
		return nil, err
	}
	if b.audio, err = caller.AssetMedia(testmedia.Tone440); err != nil {
		return nil, err
	}
	quiet := zerolog.Nop()
	logf("starting Dendrite, livekit-server and the JWT service")
	if b.hs, err = devhs.Start(ctx, devhs.Options{Dir: filepath.Join(work, "dendrite"), Federation: true, Logger: &quiet}); err != nil {
		return nil, err
	}
	if b.sfu, err = devlivekit.Start(ctx, devlivekit.Options{Dir: filepath.Join(work, "livekit"), Logger: &quiet}); err != nil {
		return nil, errors.Join(err, b.close())
	}
	if b.jwt, err = devjwt.Start(devjwt.Options{
		LiveKitURL: b.sfu.URL(), LiveKitHTTPURL: b.sfu.HTTPURL(), APIKey: b.sfu.APIKey(), APISecret: b.sfu.APISecret(),
		Homeservers: map[string]string{b.hs.ServerName(): b.hs.URL()}, Logger: quiet,
	}); err != nil {
		return nil, errors.Join(err, b.close())
	}
	b.bot, err = newBotProc(ctx, bins.bot, filepath.Join(work, "bot"), b.hs, "recorder", pprof, func(c *config.Config) {
		// The JWT service runs on plain http on 127.0.0.1 and Dendrite has no
		// .well-known: the bot uses it because it is listed here (as in the tests).
		c.LiveKit.TrustedJWTServices = []string{b.jwt.URL()}
		c.Calls.MaxTracks = min(1024, 2*maxPublishers+8)
	})
	if err != nil {
		return nil, errors.Join(err, b.close())
	}
	return b, nil
}

func (b *lkBench) close() error {
	var errs []error
	if b.jwt != nil {
		errs = append(errs, b.jwt.Close())
	}
	if b.sfu != nil {
		errs = append(errs, b.sfu.Stop())
	}
	if b.hs != nil {
		errs = append(errs, b.hs.Stop())
	}
	return errors.Join(errs...)
}

// lkPublisher is one participant: its Matrix side (membership, token) and its LiveKit
// connection publishing two tracks.
type lkPublisher struct {
	peer    *lkpeer.Peer
	closed  bool // the peer's Matrix client
	room    *lksdk.Room
	cancel  context.CancelFunc
	senders sync.WaitGroup
}

func (p *lkPublisher) stop() {
	if p.cancel != nil {
		p.cancel()
		p.senders.Wait()
	}
	if p.room != nil {
		p.room.Disconnect()
	}
}

// step runs one recording of n publishers.
func (b *lkBench) step(ctx context.Context, n int, window time.Duration, prof *profiler) (row lkRow, err error) {
	row = lkRow{Publishers: n, Seconds: window.Seconds()}
	if err := b.bot.start(ctx); err != nil {
		return row, err
	}
	defer func() {
		if serr := b.bot.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the bot: %w", serr))
		}
		folders, _ := filepath.Glob(filepath.Join(b.bot.recordings(), "*"))
		for _, f := range folders {
			_ = os.RemoveAll(f)
		}
	}()

	b.log("livekit: %d participants join the call", n)
	pubs := make([]*lkPublisher, n)
	defer func() {
		parallel(n, 8, func(i int) {
			if pubs[i] != nil {
				pubs[i].stop()
			}
		})
		for _, p := range pubs {
			if p != nil && p.peer != nil && !p.closed {
				_ = p.peer.Close()
			}
		}
	}()
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	b.steps++
	parallel(n, 4, func(i int) {
		p, err := b.newPeer(ctx, fmt.Sprintf("p%d-%d", b.steps, i))
		if err != nil {
			fail(err)
			return
		}
		pubs[i] = &lkPublisher{peer: p}
	})
	if firstErr != nil {
		return row, firstErr
	}
	owner := pubs[0].peer
	room, err := b.callRoom(ctx, owner, pubs[1:])
	if err != nil {
		return row, err
	}
	parallel(n, 4, func(i int) {
		if err := b.publish(ctx, pubs[i], room, i > 0); err != nil {
			fail(fmt.Errorf("participant %d: %w", i, err))
		}
	})
	if firstErr != nil {
		return row, firstErr
	}
	time.Sleep(2 * time.Second)
	idle, err := sampleProc(b.bot.pid())
	if err != nil {
		return row, err
	}
	row.RSSIdle = idle.rss

	since := time.Now()
	if err := sendText(ctx, owner, room, "!start"); err != nil {
		return row, err
	}
	if _, err := owner.WaitMessage(ctx, room, since, func(s string) bool { return strings.Contains(s, "Recording started") }); err != nil {
		return row, fmt.Errorf("the bot did not start recording: %w (messages: %q)", err, owner.Messages(room))
	}
	var folder string
	err = poll(ctx, 3*time.Minute, 200*time.Millisecond, func() (bool, string) {
		folders, _ := filepath.Glob(filepath.Join(b.bot.recordings(), "*"))
		best := 0
		for _, f := range folders {
			m, err := recorder.ReadManifest(f)
			if err != nil || m.Kind != "livekit" || m.Status != recorder.StatusRecording {
				continue
			}
			best = max(best, len(m.Tracks))
			if len(m.Tracks) >= 2*n {
				folder = f
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d of %d tracks recording", best, 2*n)
	})
	if err != nil {
		return row, err
	}
	allRecording := time.Now()
	time.Sleep(3 * time.Second)

	var profErr error
	profDone := make(chan struct{})
	if prof != nil {
		go func() {
			defer close(profDone)
			row.Profile, profErr = prof.capture(ctx, b.bot.httpAddr, fmt.Sprintf("bot-livekit-%dpublishers", n), window)
		}()
	} else {
		close(profDone)
	}
	sfu := pidByArg(filepath.Join(b.sfu.Dir(), "livekit.yaml"))
	row.Load.Before = loadAvg()
	r0, s0, f0 := mustSample(b.bot.pid()), mustSample(0), mustSample(sfu)
	b.log("livekit: measuring %d tracks for %v (load %.1f)", 2*n, window, row.Load.Before)
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return row, ctx.Err()
	}
	r1, s1, f1 := mustSample(b.bot.pid()), mustSample(0), mustSample(sfu)
	row.Load.After = loadAvg()
	row.CPU, row.SenderCPU, row.RSS = r1.cpu-r0.cpu, s1.cpu-s0.cpu, r1.rss
	if sfu > 0 {
		row.SFUCPU = f1.cpu - f0.cpu
	}

	stopAt := time.Now()
	if err := sendText(ctx, owner, room, "!stop"); err != nil {
		return row, err
	}
	var final time.Time
	err = poll(ctx, 2*time.Minute, pollFinal, func() (bool, string) {
		m, err := recorder.ReadManifest(folder)
		if err == nil && (m.Status == recorder.StatusFinished || m.Status == recorder.StatusComplete) {
			final = time.Now()
			return true, ""
		}
		return false, "the recording did not finish"
	})
	if err != nil {
		return row, err
	}
	row.FinalAfter = final.Sub(stopAt)
	<-profDone
	if profErr != nil {
		b.log("livekit: profile: %v", profErr)
	}

	m, err := recorder.ReadManifest(folder)
	if err != nil {
		return row, err
	}
	// One "call" per publisher for the whole-call check: its audio and its video, each
	// holding at least the time every track was recording until !stop.
	byUser := map[string]int{}
	calls := make([]*placedCall, n)
	results := make([]callResult, n)
	for i, p := range pubs {
		byUser[string(p.peer.UserID())] = i
		calls[i] = &placedCall{id: string(p.peer.UserID()), connected: allRecording, hungUp: stopAt}
	}
	for _, e := range m.Tracks {
		row.Received += e.Stats.PacketsReceived
		row.Lost += e.Stats.PacketsLost + e.Stats.PacketsLate
		row.Dropped += e.Stats.FramesDropped
		if i, ok := byUser[e.UserID]; ok {
			results[i].Files = append(results[i].Files, fileResult{Path: filepath.Join(folder, e.File), Kind: e.Kind})
		}
	}
	b.log("livekit: checking %d files with ffprobe", len(m.Tracks))
	row.Files = checkCalls(ctx, calls, results)
	if len(row.Files.Problems) > 0 {
		b.log("livekit: not whole: %s", strings.Join(row.Files.Problems, "; "))
	}
	b.log("livekit, %d publishers: %.2f ms CPU per track-second, %s per track, %d lost, %d/%d whole", n,
		float64(row.cpuPerTrack().Microseconds())/1000, kib(float64(row.RSS-row.RSSIdle)/float64(row.tracks())), row.Lost, row.Files.Whole, n)
	return row, nil
}

func (b *lkBench) newPeer(ctx context.Context, local string) (*lkpeer.Peer, error) {
	acc, err := b.hs.Register(ctx, local, "bench-pw-"+local)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.work, "peers", local)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return lkpeer.New(ctx, lkpeer.Options{
		Homeserver: b.hs.URL(), UserID: acc.UserID, AccessToken: acc.AccessToken, DeviceID: acc.DeviceID,
		DataDir: dir, ServiceURL: b.jwt.URL(), ExternalMedia: true, Logger: zerolog.Nop(),
	})
}

// callRoom creates the room as Element does for calls (members may send call membership
// state), with the bot and every other participant in it.
func (b *lkBench) callRoom(ctx context.Context, owner *lkpeer.Peer, others []*lkPublisher) (id.RoomID, error) {
	invite := []id.UserID{b.bot.userID}
	for _, o := range others {
		invite = append(invite, o.peer.UserID())
	}
	resp, err := owner.Matrix().CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat", Invite: invite,
		PowerLevelOverride: &event.PowerLevelsEventContent{Events: map[string]int{
			matrixrtc.TypeCallMember.Type: 0, matrixrtc.TypeRTCMember.Type: 0, lk.TypeEncryptionKeys.Type: 0,
		}},
	})
	if err != nil {
		return "", fmt.Errorf("create the call's room: %w", err)
	}
	var mu sync.Mutex
	var firstErr error
	parallel(len(others), 4, func(i int) {
		if _, err := others[i].peer.Matrix().JoinRoomByID(ctx, resp.RoomID); err != nil {
			mu.Lock()
			firstErr = errors.Join(firstErr, err)
			mu.Unlock()
		}
	})
	if firstErr != nil {
		return "", firstErr
	}
	err = poll(ctx, time.Minute, 200*time.Millisecond, func() (bool, string) {
		m, err := owner.Matrix().JoinedMembers(ctx, resp.RoomID)
		if err != nil {
			return false, err.Error()
		}
		_, ok := m.Joined[b.bot.userID]
		return ok, "the bot did not join the call's room"
	})
	return resp.RoomID, err
}

// publish joins the call on the Matrix side (membership, LiveKit token from the JWT
// service), connects to the SFU with server-sdk-go and publishes Opus and VP8, each sent
// in real time. Participants other than the owner stop syncing Matrix once joined: the
// bench process then spends its CPU on media.
func (b *lkBench) publish(ctx context.Context, p *lkPublisher, room id.RoomID, quiet bool) error {
	if err := p.peer.Join(ctx, room); err != nil {
		return err
	}
	url, jwt, err := p.peer.ExternalAccess()
	if err != nil {
		return err
	}
	if quiet {
		p.closed = true
		if err := p.peer.Close(); err != nil {
			return err
		}
	}
	if p.room, err = lksdk.ConnectToRoomWithToken(url, jwt, lksdk.NewRoomCallback(),
		lksdk.WithAutoSubscribe(false), lksdk.WithLogger(protologger.GetDiscardLogger())); err != nil {
		return fmt.Errorf("connect to LiveKit: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	for _, m := range []*caller.Media{b.audio, b.video} {
		kind, source := "audio", livekit.TrackSource_MICROPHONE
		if m.Video {
			kind, source = "video", livekit.TrackSource_CAMERA
		}
		local, err := webrtc.NewTrackLocalStaticSample(m.Capability, kind, "bench-"+strconv.Itoa(int(source)))
		if err != nil {
			return err
		}
		opts := &lksdk.TrackPublicationOptions{Name: source.String(), Source: source}
		if m.Video {
			opts.VideoWidth, opts.VideoHeight = 640, 360
		}
		if _, err := p.room.LocalParticipant.PublishTrack(local, opts); err != nil {
			return fmt.Errorf("publish %s: %w", kind, err)
		}
		s := testmedia.NewSender(local, m.Frames)
		p.senders.Add(1)
		go func() { defer p.senders.Done(); _ = s.Run(sctx) }()
	}
	return nil
}

func sendText(ctx context.Context, p *lkpeer.Peer, room id.RoomID, text string) error {
	_, err := p.Matrix().SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: text})
	if err != nil {
		return fmt.Errorf("send %q: %w", text, err)
	}
	return nil
}

// pidByArg finds the process whose command line holds arg (0 if none).
func pidByArg(arg string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				return pid
			}
		}
	}
	return 0
}

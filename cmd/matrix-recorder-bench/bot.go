package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Part 2: the whole bot (the real binary, a real homeserver) recording n participants,
// each a 1:1 call from a real pion PeerConnection sending Opus and 1 Mbit/s VP8.

// botRow is one line of part 2's table.
type botRow struct {
	Participants int
	Seconds      float64
	CPU          time.Duration // the bot, during the window
	SenderCPU    time.Duration // this process (the participants), during the window
	RSS, RSSBase int64
	Packets      uint64 // sent by the participants during the window
	Sent         uint64 // sent in the whole call
	Received     uint64 // received by the recorder in the whole call
	Lost         uint64 // sequence numbers never received, or too late
	Dropped      uint64 // frames not written (incomplete)
	Files        int
}

func (r botRow) lossless() bool { return r.Lost == 0 && r.Files == 2*r.Participants }

// botBench holds what every step of part 2 shares: homeserver, bot process, caller.
type botBench struct {
	work  string
	hs    *devhs.Server
	bot   *exec.Cmd
	done  chan error
	cfg   config.Config
	alice *caller.Client
	rooms []id.RoomID
	audio *caller.Media
	video *caller.Media
	log   func(format string, args ...any)
	// keep leaves each step's recordings on disk.
	keep bool
	// idleRSS is the bot's resident set after start-up, before any call: the base of
	// memory per track (Go keeps freed memory for a while, so a later step's start is
	// no base).
	idleRSS int64
}

func startBotBench(ctx context.Context, work string, maxN int, keep bool, logf func(string, ...any)) (*botBench, error) {
	b := &botBench{work: work, log: logf, keep: keep}
	bin := filepath.Join(work, "matrix-recorder")
	logf("building the bot")
	if out, err := exec.CommandContext(ctx, "go", "build", "-tags", "goolm", "-o", bin, "github.com/matrix-recorder/matrix-recorder/cmd/matrix-recorder").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the bot: %v: %s", err, out)
	}
	logf("making 1 Mbit/s VP8 with ffmpeg")
	ivf := filepath.Join(work, "busy.ivf")
	if out, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=10",
		"-pix_fmt", "yuv420p", "-c:v", "libvpx", "-b:v", "1000k", "-minrate", "1000k", "-maxrate", "1000k", "-g", "30", "-keyint_min", "30",
		"-auto-alt-ref", "0", "-lag-in-frames", "0", "-deadline", "realtime", "-cpu-used", "8", ivf).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ffmpeg: %v: %s", err, out)
	}
	data, err := os.ReadFile(ivf)
	if err != nil {
		return nil, err
	}
	frames, err := testmedia.ParseIVF("busy.ivf", data, webrtc.MimeTypeVP8)
	if err != nil {
		return nil, err
	}
	b.video = &caller.Media{Capability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, Video: true, Frames: frames}
	if b.audio, err = caller.AssetMedia(testmedia.Tone440); err != nil {
		return nil, err
	}

	logf("starting Dendrite")
	quiet := zerolog.Nop()
	if b.hs, err = devhs.Start(ctx, devhs.Options{Dir: filepath.Join(work, "dendrite"), Logger: &quiet}); err != nil {
		return nil, err
	}
	botAcc, err := b.hs.Register(ctx, "recorder", "bench-recorder-pw")
	if err != nil {
		return nil, errors.Join(err, b.close())
	}
	aliceAcc, err := b.hs.Register(ctx, "alice", "bench-alice-pw")
	if err != nil {
		return nil, errors.Join(err, b.close())
	}
	cfg := config.Default()
	cfg.Matrix.Homeserver, cfg.Matrix.UserID, cfg.Matrix.Password = b.hs.URL(), botAcc.UserID, "bench-recorder-pw"
	cfg.DataDir = filepath.Join(work, "bot-data")
	cfg.Recordings.Dir = filepath.Join(work, "recordings")
	cfg.WebRTC.IncludeLoopback = true
	cfg.WebRTC.UseHomeserverTURN = false
	cfg.Calls.MaxCalls = maxN + 8
	// After-call work (the call's picture decodes every track with ffmpeg) would run
	// during the next step's window: not what is measured here.
	cfg.PostCall.Picture.Enabled = false
	cfg.PostCall.Export.Auto = nil
	cfg.Log.Level, cfg.Log.Format = "info", "json"
	b.cfg = cfg
	yml, err := yaml.Marshal(&cfg)
	if err != nil {
		return nil, errors.Join(err, b.close())
	}
	cfgPath := filepath.Join(work, "bot.yaml")
	if err := os.WriteFile(cfgPath, yml, 0o600); err != nil {
		return nil, errors.Join(err, b.close())
	}
	botLog := filepath.Join(work, "bot.log")
	lf, err := os.Create(botLog)
	if err != nil {
		return nil, errors.Join(err, b.close())
	}
	b.bot = exec.Command(bin, "-config", cfgPath)
	b.bot.Stdout, b.bot.Stderr = lf, lf
	if err := b.bot.Start(); err != nil {
		return nil, errors.Join(err, lf.Close(), b.close())
	}
	b.done = make(chan error, 1)
	go func() { b.done <- b.bot.Wait(); _ = lf.Close() }()
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if l, _ := os.ReadFile(botLog); strings.Contains(string(l), "First sync done") {
			break
		}
		select {
		case err := <-b.done:
			b.done <- err
			return nil, errors.Join(fmt.Errorf("the bot stopped: %v (log: %s)", err, botLog), b.close())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("the bot did not sync (log: %s)", botLog), b.close())
		}
	}
	if err := os.MkdirAll(filepath.Join(work, "alice"), 0o700); err != nil {
		return nil, errors.Join(err, b.close())
	}
	if b.alice, err = caller.New(ctx, caller.Options{Homeserver: b.hs.URL(), UserID: aliceAcc.UserID, AccessToken: aliceAcc.AccessToken,
		DeviceID: aliceAcc.DeviceID, DataDir: filepath.Join(work, "alice"), Logger: quiet}); err != nil {
		return nil, errors.Join(err, b.close())
	}
	idle, err := sampleProc(b.bot.Process.Pid)
	if err != nil {
		return nil, errors.Join(err, b.close())
	}
	b.idleRSS = idle.rss
	logf("creating %d rooms", maxN)
	for len(b.rooms) < maxN {
		room, err := b.alice.CreateDM(ctx, id.UserID(botAcc.UserID), false)
		if err != nil {
			return nil, errors.Join(err, b.close())
		}
		b.rooms = append(b.rooms, room)
	}
	return b, nil
}

func (b *botBench) close() error {
	var errs []error
	if b.alice != nil {
		errs = append(errs, b.alice.Close())
	}
	if b.bot != nil && b.bot.Process != nil {
		_ = b.bot.Process.Signal(os.Interrupt)
		select {
		case <-b.done:
		case <-time.After(60 * time.Second):
			_ = b.bot.Process.Kill()
		}
	}
	if b.hs != nil {
		errs = append(errs, b.hs.Stop())
	}
	return errors.Join(errs...)
}

// step records n participants for window w after warm-up.
func (b *botBench) step(ctx context.Context, n int, w time.Duration) (botRow, error) {
	row := botRow{Participants: n, Seconds: w.Seconds()}
	before := map[string]bool{}
	old, _ := filepath.Glob(filepath.Join(b.cfg.Recordings.Dir, "*"))
	for _, f := range old {
		before[f] = true
	}
	row.RSSBase = b.idleRSS

	b.log("placing %d calls", n)
	calls := make([]*caller.Call, n)
	var mu sync.Mutex
	var firstErr error
	parallel(n, 8, func(i int) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		c, err := b.alice.Call(cctx, b.rooms[i], caller.CallOptions{AudioMedia: b.audio, VideoMedia: b.video, Network: &caller.Impairment{}})
		if err == nil {
			err = c.WaitConnected(cctx)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("call %d: %w", i, err)
		}
		calls[i] = c
	})
	defer parallel(n, 16, func(i int) {
		if calls[i] != nil {
			calls[i].Close()
		}
	})
	if firstErr != nil {
		return row, firstErr
	}
	if err := b.waitFolders(ctx, n, recorder.StatusRecording, 2, before); err != nil {
		return row, err
	}
	time.Sleep(3 * time.Second) // every track past its keyframe and first flush

	sent := func() uint64 {
		var s uint64
		for _, c := range calls {
			s += c.Network().Packets
		}
		return s
	}
	p0, s0, bot0 := sent(), mustSample(0), mustSample(b.bot.Process.Pid)
	b.log("measuring %d participants for %v", n, w)
	select {
	case <-time.After(w):
	case <-ctx.Done():
		return row, ctx.Err()
	}
	p1, s1, bot1 := sent(), mustSample(0), mustSample(b.bot.Process.Pid)
	row.Packets = p1 - p0
	row.CPU, row.SenderCPU, row.RSS = bot1.cpu-bot0.cpu, s1.cpu-s0.cpu, bot1.rss

	parallel(n, 16, func(i int) {
		hctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_ = calls[i].Hangup(hctx)
	})
	row.Sent = sent()
	if err := b.waitFolders(ctx, n, recorder.StatusFinished, 0, before); err != nil {
		return row, err
	}
	folders, _ := filepath.Glob(filepath.Join(b.cfg.Recordings.Dir, "*"))
	defer func() {
		// Free the disk for the next step (1 Mbit/s per participant adds up).
		for _, f := range folders {
			if b.keep {
				break
			}
			_ = os.RemoveAll(f)
		}
	}()
	for _, f := range folders {
		if before[f] {
			continue
		}
		m, err := recorder.ReadManifest(f)
		if err != nil {
			return row, err
		}
		for _, e := range m.Tracks {
			row.Files++
			row.Received += e.Stats.PacketsReceived
			row.Lost += e.Stats.PacketsLost + e.Stats.PacketsLate
			row.Dropped += e.Stats.FramesDropped
		}
	}
	return row, nil
}

// waitFolders waits until n call folders (not in skip) have the status, each with at
// least tracks files.
func (b *botBench) waitFolders(ctx context.Context, n int, status string, tracks int, skip map[string]bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		folders, _ := filepath.Glob(filepath.Join(b.cfg.Recordings.Dir, "*"))
		ok := 0
		for _, f := range folders {
			if skip[f] {
				continue
			}
			if m, err := recorder.ReadManifest(f); err == nil && m.Status == status && len(m.Tracks) >= tracks {
				ok++
			}
		}
		if ok >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d recordings are %s", ok, n, status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func mustSample(pid int) procSample {
	s, _ := sampleProc(pid)
	return s
}

// parallel runs fn(0..n-1) on at most width goroutines.
func parallel(n, width int, fn func(int)) {
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

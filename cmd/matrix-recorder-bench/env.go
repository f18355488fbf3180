package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/voip"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

type logFunc func(format string, args ...any)

// binaries are the programs the bench starts: the bot and the plain pion recorder, built
// once per run from this checkout.
type binaries struct {
	bot, plain string
}

func buildBinaries(ctx context.Context, dir string, logf logFunc) (binaries, error) {
	b := binaries{bot: filepath.Join(dir, "matrix-recorder"), plain: filepath.Join(dir, "plainrecorder")}
	logf("building the bot and the plain pion recorder")
	for pkg, out := range map[string]string{
		"github.com/matrix-recorder/matrix-recorder/cmd/matrix-recorder":                     b.bot,
		"github.com/matrix-recorder/matrix-recorder/cmd/matrix-recorder-bench/plainrecorder": b.plain,
	} {
		if o, err := exec.CommandContext(ctx, "go", "build", "-tags", "goolm", "-o", out, pkg).CombinedOutput(); err != nil {
			return b, fmt.Errorf("build %s: %v: %s", pkg, err, o)
		}
	}
	return b, nil
}

// busyVP8 makes 10 s of 1 Mbit/s VP8 (640x360, 30 fps, a keyframe every second) with
// ffmpeg: what a camera sends, so that the receive path carries real video rates.
func busyVP8(ctx context.Context, dir string) (*caller.Media, error) {
	ivf := filepath.Join(dir, "busy.ivf")
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
	return &caller.Media{Capability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, Video: true, Frames: frames}, nil
}

// callEnv is what the 1:1 parts share: a Dendrite, the caller account (alice, a pion
// PeerConnection per call in this process) and the media every call sends.
type callEnv struct {
	work  string
	bins  binaries
	hs    *devhs.Server
	alice *caller.Client
	// aliceDevice is alice's device: her party_id in every call.
	aliceDevice string
	audio       *caller.Media
	video       *caller.Media
	log         logFunc
}

func startCallEnv(ctx context.Context, work string, bins binaries, logf logFunc) (*callEnv, error) {
	e := &callEnv{work: work, bins: bins, log: logf}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	logf("making 1 Mbit/s VP8 with ffmpeg")
	var err error
	if e.video, err = busyVP8(ctx, work); err != nil {
		return nil, err
	}
	if e.audio, err = caller.AssetMedia(testmedia.Tone440); err != nil {
		return nil, err
	}
	logf("starting Dendrite")
	quiet := zerolog.Nop()
	if e.hs, err = devhs.Start(ctx, devhs.Options{Dir: filepath.Join(work, "dendrite"), Logger: &quiet}); err != nil {
		return nil, err
	}
	acc, err := e.hs.Register(ctx, "alice", "bench-alice-pw")
	if err != nil {
		return nil, errors.Join(err, e.close())
	}
	if err := os.MkdirAll(filepath.Join(work, "alice"), 0o700); err != nil {
		return nil, errors.Join(err, e.close())
	}
	e.aliceDevice = acc.DeviceID
	if e.alice, err = caller.New(ctx, caller.Options{Homeserver: e.hs.URL(), UserID: acc.UserID, AccessToken: acc.AccessToken,
		DeviceID: acc.DeviceID, DataDir: filepath.Join(work, "alice"), Logger: quiet}); err != nil {
		return nil, errors.Join(err, e.close())
	}
	return e, nil
}

func (e *callEnv) close() error {
	var errs []error
	if e.alice != nil {
		errs = append(errs, e.alice.Close())
	}
	if e.hs != nil {
		errs = append(errs, e.hs.Stop())
	}
	return errors.Join(errs...)
}

// dms grows rooms to n direct rooms between alice and user (who must be running to
// join them).
func (e *callEnv) dms(ctx context.Context, user id.UserID, rooms *[]id.RoomID, n int) error {
	if len(*rooms) < n {
		e.log("creating %d rooms with %s", n-len(*rooms), user)
	}
	for len(*rooms) < n {
		room, err := e.alice.CreateDM(ctx, user, false)
		if err != nil {
			return err
		}
		*rooms = append(*rooms, room)
	}
	return nil
}

// placedCall is one call of a step, as the caller saw it.
type placedCall struct {
	call      *caller.Call
	id        string
	room      id.RoomID
	connected time.Time
	// hangupSent is when m.call.hangup was sent; hungUp when the caller's connection was
	// closed after it (media flows until then).
	hangupSent time.Time
	hungUp     time.Time
}

// length is how long media flowed in the call, as the caller saw it.
func (p *placedCall) length() time.Duration { return p.hungUp.Sub(p.connected) }

// placeCalls calls every room (8 at a time, as people arrive) and waits until each
// connection is up. The bound is generous: on a busy machine with hundreds of calls
// streaming, the homeserver can take long to accept an invite.
func (e *callEnv) placeCalls(ctx context.Context, rooms []id.RoomID) ([]*placedCall, error) {
	calls := make([]*placedCall, len(rooms))
	var mu sync.Mutex
	var firstErr error
	parallel(len(rooms), 8, func(i int) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		c, err := e.alice.Call(cctx, rooms[i], caller.CallOptions{AudioMedia: e.audio, VideoMedia: e.video, Network: &caller.Impairment{}})
		if err == nil {
			err = c.WaitConnected(cctx)
		}
		mu.Lock()
		defer mu.Unlock()
		if c != nil {
			calls[i] = &placedCall{call: c, id: c.ID(), room: rooms[i], connected: time.Now()}
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("call %d: %w", i, err)
		}
	})
	if firstErr != nil {
		closeCalls(calls)
		return nil, firstErr
	}
	return calls, nil
}

// hangUp hangs every call up (16 at a time) as caller.Call.Hangup does, m.call.hangup
// then the connection closed, and returns when the last m.call.hangup was sent: the
// recorders learn of the end from it.
func (e *callEnv) hangUp(ctx context.Context, calls []*placedCall) time.Time {
	var mu sync.Mutex
	var last time.Time
	parallel(len(calls), 16, func(i int) {
		c := calls[i]
		hctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := e.alice.SendRaw(hctx, c.room, voip.TypeHangup.Type, map[string]any{
			"call_id": c.id, "party_id": e.aliceDevice, "version": "1", "reason": "user_hangup",
		})
		sent := time.Now()
		if err != nil {
			e.log("hang-up of %s: %v", c.id, err)
		}
		c.call.Close()
		mu.Lock()
		c.hangupSent, c.hungUp = sent, time.Now()
		if sent.After(last) {
			last = sent
		}
		mu.Unlock()
	})
	return last
}

func closeCalls(calls []*placedCall) {
	parallel(len(calls), 16, func(i int) {
		if calls[i] != nil {
			calls[i].call.Close()
		}
	})
}

// packetsSent counts the media packets the callers sent so far.
func packetsSent(calls []*placedCall) uint64 {
	var s uint64
	for _, c := range calls {
		s += c.call.Network().Packets
	}
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

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
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
	// aliceRaw is alice's account without the caller's machinery (the rooms are not
	// encrypted): the hang-ups go through it with a transaction ID of the bench's own, so
	// that a retried hang-up is the same event.
	aliceRaw *mautrix.Client
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
	if e.aliceRaw, err = mautrix.NewClient(e.hs.URL(), id.UserID(acc.UserID), acc.AccessToken); err != nil {
		return nil, errors.Join(err, e.close())
	}
	e.aliceRaw.DeviceID = id.DeviceID(acc.DeviceID)
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
	// hangupTries is how many times m.call.hangup was sent; hangupErr is the last refusal
	// when the homeserver never accepted it (the caller then only closed its connection).
	hangupTries int
	hangupErr   error
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

// Hang-ups the homeserver refuses for a passing reason (a 5xx, 429, a timeout: Dendrite
// on SQLite answered 500 under the soak's load) are sent again, with the same transaction
// ID (the same event, if an earlier try was stored after all), for up to hangupRetryFor.
const (
	hangupRetryFor = 2 * time.Minute
	hangupTryFor   = 30 * time.Second // one try
)

// hangUp hangs every call up (16 at a time) as caller.Call.Hangup does, m.call.hangup
// then the connection closed, and returns when the last m.call.hangup the homeserver
// accepted was sent: the recorders learn of the end from it. A refused hang-up is retried
// (see hangupRetryFor) while the call goes on; a caller whose hang-up was never accepted
// closes its connection anyway, with hangupErr set, and does not count for the time
// returned (zero when none was accepted).
func (e *callEnv) hangUp(ctx context.Context, calls []*placedCall) time.Time {
	var mu sync.Mutex
	var last time.Time
	parallel(len(calls), 16, func(i int) {
		c := calls[i]
		content := map[string]any{"call_id": c.id, "party_id": e.aliceDevice, "version": "1", "reason": "user_hangup"}
		txn := "bench-hangup-" + c.id
		tries, err := retry(ctx, hangupRetryFor, hangupBackoff, func() error {
			tctx, cancel := context.WithTimeout(ctx, hangupTryFor)
			defer cancel()
			_, err := e.aliceRaw.SendMessageEvent(tctx, c.room, event.Type{Type: voip.TypeHangup.Type, Class: event.MessageEventType}, content,
				mautrix.ReqSendEvent{TransactionID: txn})
			if err != nil && tctx.Err() != nil && ctx.Err() == nil {
				err = fmt.Errorf("%w: %w", errTryTimedOut, err)
			}
			return err
		}, func(n int, err error) {
			e.log("hang-up of %s (try %d) refused: %v", c.id, n, err)
		})
		sent := time.Now()
		if err != nil {
			e.log("hang-up of %s not accepted after %d tries: %v; closing the connection without it", c.id, tries, err)
		} else if tries > 1 {
			e.log("hang-up of %s accepted at try %d", c.id, tries)
		}
		c.call.Close()
		mu.Lock()
		c.hangupSent, c.hungUp, c.hangupTries, c.hangupErr = sent, time.Now(), tries, err
		if err == nil && sent.After(last) {
			last = sent
		}
		mu.Unlock()
	})
	return last
}

// errTryTimedOut marks a try that ran out of its own time (not the caller's context).
var errTryTimedOut = errors.New("no answer in time")

// hangupBackoff waits 1, 2, 4, 8 s, then 10 s between tries.
func hangupBackoff(n int) time.Duration {
	return min(time.Second<<min(n-1, 4), 10*time.Second)
}

// retry calls try until it succeeds, fails for good (see passing), ctx ends, or the next
// try would start more than bound after the first. backoff(n) is the wait after the nth
// try; refused is told of each refusal that will be retried. It returns the number of
// tries and the last error.
func retry(ctx context.Context, bound time.Duration, backoff func(int) time.Duration, try func() error, refused func(int, error)) (int, error) {
	start := time.Now()
	for n := 1; ; n++ {
		err := try()
		if err == nil || !passing(err) || ctx.Err() != nil {
			return n, err
		}
		wait := backoff(n)
		if time.Since(start)+wait > bound {
			return n, err
		}
		refused(n, err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return n, err
		}
	}
}

// passing says whether a refusal may pass: a 5xx or 429 from the homeserver, a try that
// ran out of time, or no HTTP answer at all (a connection reset). A 4xx other than 429 is
// for good.
func passing(err error) bool {
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.Response != nil {
		code := he.Response.StatusCode
		return code >= 500 || code == http.StatusTooManyRequests
	}
	return !errors.Is(err, context.Canceled)
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

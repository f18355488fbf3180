package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// target is a recorder that answers 1:1 calls through the bench's Dendrite: the bot, or
// the plain pion recorder it is measured against. Each step starts a fresh process.
type target interface {
	name() string
	user() id.UserID
	rooms() *[]id.RoomID
	start(ctx context.Context) error
	pid() int
	// waitRecording waits until every call's files are being written.
	waitRecording(ctx context.Context, calls []*placedCall) error
	// waitFinal waits until every call's files are final and returns when the last one was
	// seen final (polled every 20 ms).
	waitFinal(ctx context.Context, calls []*placedCall) (time.Time, error)
	// result says what the recorder wrote for a call.
	result(c *placedCall) (callResult, error)
	stop() error
	// clean deletes the step's recordings (1 Mbit/s a call adds up).
	clean()
	// pprofAddr is where the process serves Go's profiler ("": nowhere).
	pprofAddr() string
}

// callResult is what a recorder wrote for one call.
type callResult struct {
	Files   []fileResult
	Lost    uint64 // packets never received (or, for the bot, too late to be written)
	Dropped uint64 // video frames not written (incomplete); the plain recorder does not say
}

type fileResult struct {
	Path string
	Kind string // "audio" or "video"
}

const pollFinal = 20 * time.Millisecond

// botTarget is the bot as the recorder of 1:1 calls.
type botTarget struct {
	p       *botProc
	rs      []id.RoomID
	folders map[string]string // call id → folder
	// finishedAt is when waitFinal saw the last call's manifest say finished.
	finishedAt time.Time
}

func (t *botTarget) name() string        { return "bot" }
func (t *botTarget) user() id.UserID     { return t.p.userID }
func (t *botTarget) rooms() *[]id.RoomID { return &t.rs }
func (t *botTarget) pid() int            { return t.p.pid() }
func (t *botTarget) stop() error         { return t.p.stop() }

func (t *botTarget) pprofAddr() string {
	if t.p.cfg.HTTP.Pprof {
		return t.p.httpAddr
	}
	return ""
}

func (t *botTarget) start(ctx context.Context) error {
	t.folders = map[string]string{}
	return t.p.start(ctx)
}

// manifests reads the manifest of every call folder, by call id.
func (t *botTarget) manifests() map[string]*recorder.Manifest {
	out := map[string]*recorder.Manifest{}
	folders, _ := filepath.Glob(filepath.Join(t.p.recordings(), "*"))
	for _, f := range folders {
		if m, err := recorder.ReadManifest(f); err == nil {
			out[m.CallID] = m
			t.folders[m.CallID] = f
		}
	}
	return out
}

func (t *botTarget) waitRecording(ctx context.Context, calls []*placedCall) error {
	return poll(ctx, 2*time.Minute, 200*time.Millisecond, func() (bool, string) {
		ms := t.manifests()
		ok := 0
		for _, c := range calls {
			if m := ms[c.id]; m != nil && m.Status == recorder.StatusRecording && len(m.Tracks) >= 2 {
				ok++
			}
		}
		return ok == len(calls), fmt.Sprintf("%d of %d calls have both tracks recording", ok, len(calls))
	})
}

// waitFinal: a call's files are final when its manifest lists each of them as complete
// (or interrupted): closed, synced, its entry on disk, as the plain recorder's line says
// of its writers. The manifest says finished a little later, once the SHA-256 of each file
// is in it (the recorder hashes the files after they are final); finishedAt keeps when
// the last call's did.
func (t *botTarget) waitFinal(ctx context.Context, calls []*placedCall) (time.Time, error) {
	ends, err := t.watchEnds(ctx, calls, 2*time.Minute)
	var filesAt time.Time
	for _, e := range ends {
		filesAt = later(filesAt, e.FinalAt)
		t.finishedAt = later(t.finishedAt, e.FinishedAt)
	}
	return filesAt, err
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// callEnd is what the bot's manifest of one call said after the hang-up: when its files
// were first seen final and when it first said finished (zero: not within the wait), and
// its status at the last look ("" when it could not be read).
type callEnd struct {
	ID                  string
	FinalAt, FinishedAt time.Time
	Status              string
	Interruption        string
	// Recording counts the files still being written at the last look.
	Recording int
}

// watchEnds polls every call's manifest (every pollFinal) until each says finished or d
// has passed, and returns what it saw of each, in the order of calls; the error says
// which were left (or that ctx ended).
func (t *botTarget) watchEnds(ctx context.Context, calls []*placedCall, d time.Duration) ([]callEnd, error) {
	ends := make([]callEnd, len(calls))
	left := map[int]bool{}
	for i, c := range calls {
		ends[i].ID = c.id
		left[i] = true
	}
	err := poll(ctx, d, pollFinal, func() (bool, string) {
		for i := range left {
			e := &ends[i]
			m, err := recorder.ReadManifest(t.folders[e.ID])
			if err != nil {
				continue
			}
			e.Status, e.Interruption, e.Recording = m.Status, m.Interruption, 0
			for _, f := range m.Tracks {
				if f.Status == recorder.StatusRecording {
					e.Recording++
				}
			}
			finished := m.Status == recorder.StatusFinished || m.Status == recorder.StatusComplete
			if e.FinalAt.IsZero() && (finished || filesFinal(m)) {
				e.FinalAt = time.Now()
			}
			if finished {
				e.FinishedAt = time.Now()
				delete(left, i)
			}
		}
		final := 0
		for _, e := range ends {
			if !e.FinalAt.IsZero() {
				final++
			}
		}
		return len(left) == 0, fmt.Sprintf("%d of %d calls not finished (%d with their files final)", len(left), len(calls), final)
	})
	return ends, err
}

// filesFinal says whether a manifest lists files and none is still being written.
func filesFinal(m *recorder.Manifest) bool {
	for _, e := range m.Tracks {
		if e.Status == recorder.StatusRecording {
			return false
		}
	}
	return len(m.Tracks) > 0
}

func (t *botTarget) result(c *placedCall) (callResult, error) {
	var r callResult
	folder := t.folders[c.id]
	m, err := recorder.ReadManifest(folder)
	if err != nil {
		return r, err
	}
	for _, e := range m.Tracks {
		r.Files = append(r.Files, fileResult{Path: filepath.Join(folder, e.File), Kind: e.Kind})
		r.Lost += e.Stats.PacketsLost + e.Stats.PacketsLate
		r.Dropped += e.Stats.FramesDropped
	}
	return r, nil
}

func (t *botTarget) clean() {
	folders, _ := filepath.Glob(filepath.Join(t.p.recordings(), "*"))
	for _, f := range folders {
		_ = os.RemoveAll(f)
	}
}

// plainTarget is the plain pion recorder (plainrecorder/), its own process.
type plainTarget struct {
	// pprofAddr, when set, is where the plain recorder serves Go's profiler.
	profAddr string
	bin      string
	dir      string
	hs       string
	acc      devhs.Account
	rs       []id.RoomID
	cmd      *exec.Cmd
	done     chan error
	ready    chan struct{}
	mu       sync.Mutex
	finals   map[string]plainFinal
}

type plainFinal struct {
	at    time.Time
	Final struct {
		CallID string `json:"call_id"`
		Tracks []struct {
			File    string `json:"file"`
			Kind    string `json:"kind"`
			Packets uint64 `json:"packets"`
			Lost    uint64 `json:"lost"`
		} `json:"tracks"`
	}
}

func newPlainTarget(ctx context.Context, bin, dir string, hs *devhs.Server) (*plainTarget, error) {
	acc, err := hs.Register(ctx, "plain", "bench-plain-pw")
	if err != nil {
		return nil, err
	}
	return &plainTarget{bin: bin, dir: dir, hs: hs.URL(), acc: acc}, nil
}

func (t *plainTarget) name() string        { return "plain pion" }
func (t *plainTarget) user() id.UserID     { return id.UserID(t.acc.UserID) }
func (t *plainTarget) rooms() *[]id.RoomID { return &t.rs }
func (t *plainTarget) pid() int            { return t.cmd.Process.Pid }
func (t *plainTarget) pprofAddr() string   { return t.profAddr }

func (t *plainTarget) start(ctx context.Context) error {
	if err := os.MkdirAll(t.dir, 0o755); err != nil {
		return err
	}
	t.finals = map[string]plainFinal{}
	t.ready = make(chan struct{})
	args := []string{"-homeserver", t.hs, "-user", t.acc.UserID, "-device", t.acc.DeviceID, "-dir", t.dir}
	if t.profAddr != "" {
		args = append(args, "-pprof", t.profAddr)
	}
	t.cmd = exec.Command(t.bin, args...)
	t.cmd.Env = append(os.Environ(), "PLAINRECORDER_ACCESS_TOKEN="+t.acc.AccessToken)
	lf, err := os.OpenFile(t.dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	t.cmd.Stderr = lf
	out, err := t.cmd.StdoutPipe()
	if err != nil {
		return errors.Join(err, lf.Close())
	}
	if err := t.cmd.Start(); err != nil {
		return errors.Join(err, lf.Close())
	}
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			switch {
			case l == "ready":
				close(t.ready)
			case strings.HasPrefix(l, "final "):
				f := plainFinal{at: time.Now()}
				if json.Unmarshal([]byte(strings.TrimPrefix(l, "final ")), &f.Final) == nil {
					t.mu.Lock()
					t.finals[f.Final.CallID] = f
					t.mu.Unlock()
				}
			}
		}
	}()
	t.done = make(chan error, 1)
	go func() { <-lines; t.done <- t.cmd.Wait(); _ = lf.Close() }()
	select {
	case <-t.ready:
		return nil
	case err := <-t.done:
		t.done <- err
		return fmt.Errorf("the plain recorder stopped: %v (log: %s.log)", err, t.dir)
	case <-time.After(time.Minute):
		return errors.Join(errors.New("the plain recorder did not sync"), t.stop())
	}
}

func (t *plainTarget) stop() error {
	if t.cmd == nil || t.cmd.Process == nil {
		return nil
	}
	_ = t.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-t.done:
		t.cmd = nil
		return err
	case <-time.After(time.Minute):
		_ = t.cmd.Process.Kill()
		<-t.done
		t.cmd = nil
		return errors.New("the plain recorder did not stop within a minute")
	}
}

func (t *plainTarget) waitRecording(ctx context.Context, calls []*placedCall) error {
	return poll(ctx, 2*time.Minute, 200*time.Millisecond, func() (bool, string) {
		ok := 0
		for _, c := range calls {
			files, _ := filepath.Glob(filepath.Join(t.dir, c.id, "track*"))
			grown := 0
			for _, f := range files {
				if st, err := os.Stat(f); err == nil && st.Size() > 2000 {
					grown++
				}
			}
			if grown >= 2 {
				ok++
			}
		}
		return ok == len(calls), fmt.Sprintf("%d of %d calls have both tracks recording", ok, len(calls))
	})
}

func (t *plainTarget) waitFinal(ctx context.Context, calls []*placedCall) (time.Time, error) {
	var last time.Time
	err := poll(ctx, 2*time.Minute, pollFinal, func() (bool, string) {
		t.mu.Lock()
		defer t.mu.Unlock()
		n := 0
		for _, c := range calls {
			if f, ok := t.finals[c.id]; ok {
				n++
				if f.at.After(last) {
					last = f.at
				}
			}
		}
		return n == len(calls), fmt.Sprintf("%d of %d calls not final", len(calls)-n, len(calls))
	})
	return last, err
}

func (t *plainTarget) result(c *placedCall) (callResult, error) {
	var r callResult
	t.mu.Lock()
	f, ok := t.finals[c.id]
	t.mu.Unlock()
	if !ok {
		return r, fmt.Errorf("call %s: not final", c.id)
	}
	for _, tr := range f.Final.Tracks {
		if tr.File != "" {
			r.Files = append(r.Files, fileResult{Path: filepath.Join(t.dir, c.id, tr.File), Kind: tr.Kind})
		}
		r.Lost += tr.Lost
	}
	return r, nil
}

func (t *plainTarget) clean() {
	folders, _ := filepath.Glob(filepath.Join(t.dir, "*"))
	for _, f := range folders {
		_ = os.RemoveAll(f)
	}
}

// poll calls check every interval until it reports done, d passes (an error with its
// last words) or ctx ends.
func poll(ctx context.Context, d, interval time.Duration, check func() (bool, string)) error {
	deadline := time.Now().Add(d)
	for {
		done, status := check()
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

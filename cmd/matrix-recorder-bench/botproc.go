package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
)

// botProc is the real bot binary run with a bench config: a fresh process per start,
// the same account, data_dir and recordings folder each time.
type botProc struct {
	bin     string
	dir     string
	cfg     config.Config
	userID  id.UserID
	cmd     *exec.Cmd
	done    chan error
	logPath string
	// httpAddr is http.listen (127.0.0.1:port): /metrics, and /debug/pprof/ when profiling.
	httpAddr string
}

// newBotProc registers the bot's account on hs and writes its config: the harness's
// settings (loopback candidates, no TURN), no after-call work (the next step's window
// would measure it), every limit above what the bench asks for, /metrics on loopback and,
// with pprof, the profiler. edit adjusts the config for a part.
func newBotProc(ctx context.Context, bin, dir string, hs *devhs.Server, localpart string, pprof bool, edit func(*config.Config)) (*botProc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pw := "bench-" + localpart + "-pw"
	acc, err := hs.Register(ctx, localpart, pw)
	if err != nil {
		return nil, err
	}
	port, err := devtools.FreePort()
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Matrix.Homeserver, cfg.Matrix.UserID, cfg.Matrix.Password = hs.URL(), acc.UserID, pw
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Recordings.Dir = filepath.Join(dir, "recordings")
	cfg.Recordings.MaxPerInviter = 0 // one caller places every call
	cfg.Recordings.MaxPerRoom = 0
	cfg.WebRTC.IncludeLoopback = true
	cfg.WebRTC.UseHomeserverTURN = false
	cfg.Calls.MaxCalls = 10000
	cfg.PostCall.Picture.Enabled = false
	cfg.PostCall.Export.Auto = nil
	cfg.Log.Level, cfg.Log.Format = "info", "json"
	cfg.HTTP.Listen = "127.0.0.1:" + strconv.Itoa(port)
	cfg.HTTP.Pprof = pprof
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &botProc{bin: bin, dir: dir, cfg: cfg, userID: id.UserID(acc.UserID), logPath: filepath.Join(dir, "bot.log"), httpAddr: cfg.HTTP.Listen}, nil
}

func (b *botProc) recordings() string { return b.cfg.Recordings.Dir }

// start runs a fresh bot process and waits for its first sync.
func (b *botProc) start(ctx context.Context) error {
	yml, err := yaml.Marshal(&b.cfg)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(b.dir, "bot.yaml")
	if err := os.WriteFile(cfgPath, yml, 0o600); err != nil {
		return err
	}
	lf, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	off, _ := lf.Seek(0, io.SeekEnd)
	b.cmd = exec.Command(b.bin, "-config", cfgPath)
	b.cmd.Stdout, b.cmd.Stderr = lf, lf
	if err := b.cmd.Start(); err != nil {
		return errors.Join(err, lf.Close())
	}
	b.done = make(chan error, 1)
	go func() { b.done <- b.cmd.Wait(); _ = lf.Close() }()
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if l, _ := os.ReadFile(b.logPath); int64(len(l)) > off && strings.Contains(string(l[off:]), "First sync done") {
			return nil
		}
		select {
		case err := <-b.done:
			b.done <- err
			return fmt.Errorf("the bot stopped: %v (log: %s)", err, b.logPath)
		case <-ctx.Done():
			return errors.Join(ctx.Err(), b.stop())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("the bot did not sync (log: %s)", b.logPath), b.stop())
		}
	}
}

func (b *botProc) pid() int { return b.cmd.Process.Pid }

// stop ends the bot as an operator does (SIGINT), killing it after a minute.
func (b *botProc) stop() error {
	if b.cmd == nil || b.cmd.Process == nil {
		return nil
	}
	_ = b.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-b.done:
		b.cmd = nil
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("the bot exited with %v (log: %s)", err, b.logPath)
		}
		return err
	case <-time.After(time.Minute):
		_ = b.cmd.Process.Kill()
		<-b.done
		b.cmd = nil
		return fmt.Errorf("the bot did not stop within a minute (log: %s)", b.logPath)
	}
}

// metrics reads the unlabelled samples of names from one read of the bot's /metrics;
// a name it does not have is left out.
func (b *botProc) metrics(ctx context.Context, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the bot's metrics: %w", err)
	}
	defer resp.Body.Close()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && want[f[0]] {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return nil, fmt.Errorf("the bot's %s: %w", f[0], err)
			}
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}

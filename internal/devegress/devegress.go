// Package devegress runs LiveKit Egress for the integration tests: a throwaway redis-server
// on 127.0.0.1 (Egress and livekit-server talk through it) and the Egress service built by
// internal/devtools, configured for one livekit-server.
//
// Start Redis first, start livekit-server with its address (devlivekit.Options.Redis), then
// Egress. Egress starts one handler process per egress; it runs its own binary by the name
// "egress" from PATH, which Start provides.
package devegress

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
)

// Redis is a running redis-server (Debian's redis-server package) without persistence.
type Redis struct {
	port      int
	dir       string
	removeDir func() error // devtools.ServerDir
	proc      *devtools.Process
}

// StartRedis starts redis-server on a free port of 127.0.0.1. dir holds its log ("" for a
// temporary folder, removed by Stop).
func StartRedis(ctx context.Context, dir string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is not installed (Debian: apt-get install redis-server): %w", err)
	}
	r := &Redis{}
	if r.dir, r.removeDir, err = devtools.ServerDir(dir, "devredis-"); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if r.port, err = devtools.FreePort(); err != nil {
			return nil, err
		}
		r.proc, err = devtools.StartProcess(ctx, devtools.ProcessSpec{
			Name: "redis-server", Path: bin, Dir: r.dir, LogPath: filepath.Join(r.dir, "redis.log"),
			Args: []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(r.port), "--save", "", "--appendonly", "no", "--dir", r.dir},
		})
		if err != nil {
			return nil, err
		}
		if lastErr = waitLog(ctx, r.proc, "Ready to accept connections", 20*time.Second); lastErr == nil {
			return r, nil
		}
		_ = r.proc.Stop()
		if !devtools.IsAddrInUse(r.proc.LogTail(4000)) {
			break
		}
	}
	return nil, errors.Join(lastErr, r.removeDir())
}

// Addr is host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// Stop ends redis-server.
func (r *Redis) Stop() error {
	return errors.Join(r.proc.Stop(), r.removeDir())
}

// Options configure Start.
type Options struct {
	// Dir holds the config, the log and the egress binary link ("" for a temporary folder,
	// removed by Stop).
	Dir string
	// LiveKitURL is the server's ws:// URL; APIKey and APISecret its key pair.
	LiveKitURL, APIKey, APISecret string
	// Redis is the address the server uses.
	Redis string
	// TrackCPUCost is the CPU an egress of one track reserves (default 0.2; Egress's own
	// default of 0.5 admits only three track egresses within 30 s on two cores).
	TrackCPUCost float64
	Logger       *zerolog.Logger
	Tools        []devtools.Option
}

// Server is a running Egress service.
type Server struct {
	dir       string
	removeDir func() error // devtools.ServerDir
	proc      *devtools.Process
	log       zerolog.Logger
	// api asks the server about egresses (List).
	api *lksdk.EgressClient
}

// Start runs Egress and returns once it has registered with the server ("service ready").
func Start(ctx context.Context, opts Options) (*Server, error) {
	log := zerolog.Ctx(ctx).With().Str("component", "devegress").Logger()
	if opts.Logger != nil {
		log = opts.Logger.With().Str("component", "devegress").Logger()
	}
	if opts.LiveKitURL == "" || opts.APIKey == "" || opts.APISecret == "" || opts.Redis == "" {
		return nil, errors.New("devegress: LiveKitURL, APIKey, APISecret and Redis are required")
	}
	bin, err := devtools.Binary(ctx, devtools.Egress, "server", append([]devtools.Option{devtools.WithLogger(log)}, opts.Tools...)...)
	if err != nil {
		return nil, fmt.Errorf("getting the egress binary: %w", err)
	}
	s := &Server{log: log, api: lksdk.NewEgressClient(httpURL(opts.LiveKitURL), opts.APIKey, opts.APISecret)}
	if s.dir, s.removeDir, err = devtools.ServerDir(opts.Dir, "devegress-"); err != nil {
		return nil, err
	}
	fail := func(err error) (*Server, error) { return nil, errors.Join(err, s.removeDir()) }
	// The service starts each handler as "egress run-handler ...".
	binDir := filepath.Join(s.dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fail(err)
	}
	link := filepath.Join(binDir, "egress")
	_ = os.Remove(link)
	if err := os.Symlink(bin, link); err != nil {
		return fail(fmt.Errorf("linking the egress binary: %w", err))
	}
	health, err := devtools.FreePort()
	if err != nil {
		return fail(err)
	}
	tmpl, err := devtools.FreePort()
	if err != nil {
		return fail(err)
	}
	cost := opts.TrackCPUCost
	if cost <= 0 {
		cost = 0.2
	}
	cfg := map[string]any{
		"api_key": opts.APIKey, "api_secret": opts.APISecret, "ws_url": opts.LiveKitURL,
		"redis":         map[string]any{"address": opts.Redis},
		"health_port":   health,
		"template_port": tmpl,
		"logging":       map[string]any{"level": "info"},
		"cpu_cost": map[string]any{
			"max_cpu_utilization": 0.9,
			"track_cpu_cost":      cost,
		},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return fail(err)
	}
	cfgPath := filepath.Join(s.dir, "egress.yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return fail(err)
	}
	s.proc, err = devtools.StartProcess(ctx, devtools.ProcessSpec{
		Name: "egress", Path: link, Args: []string{"--config", cfgPath}, Dir: s.dir,
		LogPath: filepath.Join(s.dir, "egress.log"),
		Env:     []string{"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH")},
	})
	if err != nil {
		return fail(err)
	}
	if err := waitLog(ctx, s.proc, "service ready", 60*time.Second); err != nil {
		return fail(errors.Join(err, s.proc.Stop()))
	}
	log.Info().Str("log", s.proc.LogPath()).Int("health_port", health).Msg("LiveKit Egress ready")
	return s, nil
}

// List returns the egresses the server knows for a LiveKit room (ended ones too, while the
// server keeps them): what a test asks to be sure nothing was, or something was, recorded.
func (s *Server) List(ctx context.Context, room string) ([]*livekit.EgressInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := s.api.ListEgress(ctx, &livekit.ListEgressRequest{RoomName: room})
	if err != nil {
		return nil, fmt.Errorf("list egress of %s: %w", room, err)
	}
	return resp.Items, nil
}

// httpURL is the server API's address for its ws:// or wss:// URL.
func httpURL(u string) string {
	switch {
	case strings.HasPrefix(u, "wss://"):
		return "https://" + strings.TrimPrefix(u, "wss://")
	case strings.HasPrefix(u, "ws://"):
		return "http://" + strings.TrimPrefix(u, "ws://")
	}
	return u
}

// LogTail returns at most n bytes from the end of the log.
func (s *Server) LogTail(n int) string { return s.proc.LogTail(n) }

// Stop ends the service and its handler processes and removes a temporary folder. The
// service starts each handler in a session of its own, so they are found by parent.
func (s *Server) Stop() error {
	handlers := children(s.proc.Pid())
	err := s.proc.Stop()
	for _, pid := range handlers {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return errors.Join(err, s.removeDir())
}

// waitLog waits until the process's log contains want.
func waitLog(ctx context.Context, p *devtools.Process, want string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		if strings.Contains(p.LogTail(1<<20), want) {
			return nil
		}
		select {
		case <-p.Done():
			_, werr := p.Exited()
			return fmt.Errorf("%s exited before it was ready (%v); log:\n%s", filepath.Base(p.LogPath()), werr, p.LogTail(4000))
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s (want %q in the log); log:\n%s", d, want, p.LogTail(4000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		rest := string(data)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

package devtools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// ProcessSpec describes a server process to start.
type ProcessSpec struct {
	// Name is used in errors and logs ("dendrite").
	Name string
	// Path is the binary; Args its arguments.
	Path string
	Args []string
	// Env is added to the current environment.
	Env []string
	// Dir is the working directory.
	Dir string
	// LogPath receives the process's stdout and stderr.
	LogPath string
}

// Process is a running server started by StartProcess, in its own process
// group so that Stop also ends its children.
type Process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	stop    func() bool

	mu      sync.Mutex
	waitErr error
	stopped bool
}

// StartProcess starts spec. The process is killed when ctx ends, when Stop is
// called, or when the calling process dies (parent-death signal).
func StartProcess(ctx context.Context, spec ProcessSpec) (*Process, error) {
	logFile, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log of %s: %w", spec.Name, err)
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, errors.Join(fmt.Errorf("starting %s (%s): %w", spec.Name, spec.Path, err), logFile.Close())
	}
	p := &Process{
		name:    spec.Name,
		logPath: spec.LogPath,
		cmd:     cmd,
		logFile: logFile,
		done:    make(chan struct{}),
	}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		_ = logFile.Close()
		close(p.done)
	}()
	p.stop = context.AfterFunc(ctx, p.terminate)
	return p, nil
}

// Pid returns the process id (also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// LogPath returns the file holding the process's output.
func (p *Process) LogPath() string { return p.logPath }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how, if it has.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Stop ends the process group: SIGTERM, then SIGKILL after 5 seconds. It is
// idempotent and returns nil when the process ended because it was stopped.
func (p *Process) Stop() error {
	p.stop()
	p.terminate()
	return nil
}

func (p *Process) terminate() {
	p.mu.Lock()
	already := p.stopped
	p.stopped = true
	p.mu.Unlock()
	if !already {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
	<-p.done
	// Whatever the main process left behind in its group goes too.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// LogTail returns at most n bytes from the end of the process's log.
func (p *Process) LogTail(n int) string {
	return FileTail(p.logPath, n)
}

// FileTail returns at most n bytes from the end of a file, or a note saying
// why it could not be read.
func FileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot stat %s: %v)", path, err)
	}
	off := st.Size() - int64(n)
	if off < 0 {
		off = 0
	}
	data, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return string(data)
}

// WaitHTTP polls url until it answers 200, the process exits, or ctx or
// timeout ends. The error carries the end of the process's log.
func (p *Process) WaitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", p.name, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("status %s", resp.Status)
		} else {
			last = err
		}
		select {
		case <-p.done:
			_, werr := p.Exited()
			return fmt.Errorf("%s exited before it was ready (%v); log:\n%s", p.name, werr, p.LogTail(4000))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s after %s (last: %v); log:\n%s", p.name, url, timeout, last, p.LogTail(4000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// caller should start its server soon; another process may take the port in
// between, which a retry resolves.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free UDP port on 127.0.0.1: %w", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// IsAddrInUse reports whether a log text says a port was taken, so callers
// can retry with another port.
func IsAddrInUse(log string) bool {
	// Go says "address already in use", redis-server "Address already in use".
	return strings.Contains(strings.ToLower(log), "address already in use")
}

// StartOnFreePorts runs start, which picks free ports and starts a server, up to three
// times while it fails because a port was taken between picking and binding (tests run
// in parallel). proc returns the process start launched, whose log tells; the first
// other failure ends the attempts.
func StartOnFreePorts(log zerolog.Logger, start func() error, proc func() *Process) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = start(); err == nil {
			return nil
		}
		p := proc()
		if p == nil || !IsAddrInUse(p.LogTail(8000)) {
			return err
		}
		log.Warn().Err(err).Msg("A port was taken meanwhile; retrying with others")
	}
	return err
}

// ServerDir is a dev server's folder: dir made absolute and created, or, when dir is "", a
// new temporary folder whose name begins with prefix. remove removes the temporary
// folder (what the server's Stop and a failed start do) and leaves a given one alone.
func ServerDir(dir, prefix string) (path string, remove func() error, err error) {
	if dir == "" {
		if dir, err = os.MkdirTemp("", prefix); err != nil {
			return "", nil, err
		}
		return dir, func() error { return os.RemoveAll(dir) }, nil
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	return dir, func() error { return nil }, nil
}

// Package ffmpeg runs the ffmpeg command line tool for the after-call work: found at run
// time (so installing it later needs no restart), at low CPU priority so that it never
// competes with live recordings, with progress and a short error report.
package ffmpeg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNotInstalled says ffmpeg could not be found.
var ErrNotInstalled = errors.New("ffmpeg is not installed")

// Find returns the path of ffmpeg: configured is a path or a command name looked up in
// PATH; empty means "ffmpeg".
func Find(configured string) (string, error) {
	name := configured
	if name == "" {
		name = "ffmpeg"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w (looked for %q: %v)", ErrNotInstalled, name, err)
	}
	return p, nil
}

// Probe returns ffprobe next to ffmpeg (or from PATH).
func Probe(ffmpegPath string) (string, error) {
	if dir := filepath.Dir(ffmpegPath); dir != "." {
		if p, err := exec.LookPath(filepath.Join(dir, "ffprobe")); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("ffprobe")
	if err != nil {
		return "", fmt.Errorf("%w (ffprobe: %v)", ErrNotInstalled, err)
	}
	return p, nil
}

// baseArgs come first on every ffmpeg command line.
var baseArgs = []string{"-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1"}

// Run runs ffmpeg with args (after the common options). With progress set, ffmpeg
// reports its position in the output and progress is called with it as it goes.
func Run(ctx context.Context, bin string, args []string, progress func(done time.Duration)) error {
	full := append(append([]string(nil), baseArgs...), "-y")
	if progress != nil {
		full = append(full, "-nostats", "-progress", "pipe:1")
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.WaitDelay = 5 * time.Second
	stderr := &tailBuffer{max: 4 << 10}
	cmd.Stderr = stderr
	var stdout io.ReadCloser
	if progress != nil {
		var err error
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return fmt.Errorf("ffmpeg stdout: %w", err)
		}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start ffmpeg: %w", err)
	}
	lowerPriority(cmd.Process.Pid)
	if stdout != nil {
		readProgress(stdout, progress)
	}
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("ffmpeg stopped: %w", ctx.Err())
		}
		return fmt.Errorf("ffmpeg failed: %w: %s", err, stderr.lastLines(3))
	}
	return nil
}

// Stream runs ffmpeg with args and hands its standard output to read, which must read
// it to the end (or return an error, which stops ffmpeg).
func Stream(ctx context.Context, bin string, args []string, read func(io.Reader) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	full := append(append([]string(nil), baseArgs...), args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.WaitDelay = 5 * time.Second
	stderr := &tailBuffer{max: 4 << 10}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("ffmpeg stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start ffmpeg: %w", err)
	}
	lowerPriority(cmd.Process.Pid)
	rerr := read(stdout)
	if rerr != nil {
		cancel()
		_, _ = io.Copy(io.Discard, stdout)
	}
	werr := cmd.Wait()
	switch {
	case rerr != nil:
		return rerr
	case werr != nil && ctx.Err() != nil:
		return fmt.Errorf("ffmpeg stopped: %w", ctx.Err())
	case werr != nil:
		return fmt.Errorf("ffmpeg failed: %w: %s", werr, stderr.lastLines(3))
	}
	return nil
}

// readProgress parses ffmpeg's -progress output ("key=value" lines).
func readProgress(r io.Reader, progress func(time.Duration)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok || k != "out_time_us" {
			continue
		}
		if us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && us >= 0 {
			progress(time.Duration(us) * time.Microsecond)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) lastLines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(bytes.ToValidUTF8(t.b, []byte("?")))), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, " / ")
	if s == "" {
		return "no error output"
	}
	return s
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// profiler takes CPU profiles of the bot through its http.pprof endpoint (-profile DIR).
type profiler struct{ dir string }

// maxProfileChunk stays under the bot's HTTP write timeout (1 min): pprof refuses longer.
const maxProfileChunk = 50 * time.Second

// capture profiles the process behind addr for d, in chunks, into dir/name.pprof
// (name-2.pprof, ... for further chunks), and returns the files. go tool pprof merges
// files given together.
func (p *profiler) capture(ctx context.Context, addr, name string, d time.Duration) ([]string, error) {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for k := 1; d > 0; k++ {
		chunk := min(d, maxProfileChunk)
		d -= chunk
		secs := max(1, int(chunk.Round(time.Second)/time.Second))
		path := filepath.Join(p.dir, name+".pprof")
		if k > 1 {
			path = filepath.Join(p.dir, fmt.Sprintf("%s-%d.pprof", name, k))
		}
		if err := fetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), path); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}

// heap writes the live heap of the process behind addr (after a collection) into
// dir/name.heap.pprof.
func (p *profiler) heap(ctx context.Context, addr, name string) (string, error) {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(p.dir, name+".heap.pprof")
	return path, fetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", addr), path)
}

func fetchProfile(ctx context.Context, url, path string) error {
	ctx, cancel := context.WithTimeout(ctx, maxProfileChunk+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("CPU profile: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body[:min(len(body), 300)]))
	}
	return os.WriteFile(path, body, 0o644)
}

// profileLine is one function of go tool pprof -top.
type profileLine struct {
	Flat, FlatPct, Cum, CumPct, Func string
}

// topFunctions runs go tool pprof -top (by flat or cumulative value) over files; extra
// arguments choose e.g. the heap's sample index.
func topFunctions(ctx context.Context, files []string, cum bool, n int, extra ...string) ([]profileLine, string, error) {
	args := []string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", n)}
	if cum {
		args = append(args, "-cum")
	}
	args = append(args, extra...)
	args = append(args, files...)
	out, err := exec.CommandContext(ctx, "go", args...).Output()
	if err != nil {
		return nil, "", fmt.Errorf("go tool pprof: %w", err)
	}
	var lines []profileLine
	var total string
	sc := bufio.NewScanner(bytes.NewReader(out))
	inTable := false
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "Duration:") || strings.HasPrefix(l, "Showing nodes accounting for") && strings.Contains(l, "B total") {
			total = strings.TrimSpace(l)
		}
		if strings.HasPrefix(strings.TrimSpace(l), "flat") {
			inTable = true
			continue
		}
		f := strings.Fields(l)
		if !inTable || len(f) < 6 {
			continue
		}
		lines = append(lines, profileLine{Flat: f[0], FlatPct: f[1], Cum: f[3], CumPct: f[4], Func: strings.Join(f[5:], " ")})
	}
	return lines, total, nil
}

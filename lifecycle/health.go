package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/matrix-recorder/matrix-recorder/config"
)

// probeEvery is how often /healthz really writes into a folder: a monitor that asks every
// second costs the disk a file every probeEvery, not every second.
const probeEvery = 10 * time.Second

// Check is one of the lifecycle's conditions of readiness (httpserver.Check).
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// HealthChecks are the lifecycle's conditions of readiness: the state database answers,
// data_dir and recordings.dir take a new file (really tried, at most every probeEvery),
// and the recordings disk has more free space than recordings.min_free_space.
func (lc *Lifecycle) HealthChecks() []Check {
	lc.probesOnce.Do(func() {
		lc.probes.data = &writeProbe{dir: lc.cfg.DataDir, key: "data_dir", every: probeEvery, now: lc.now}
		lc.probes.recordings = &writeProbe{dir: lc.cfg.Recordings.Dir, key: "recordings.dir", every: probeEvery, now: lc.now}
	})
	return []Check{
		{Name: "database", Run: lc.checkClaim},
		{Name: "data_dir", Run: lc.probes.data.check},
		{Name: "recordings_dir", Run: lc.probes.recordings.check},
		{Name: "disk_space", Run: lc.checkDiskSpace},
	}
}

// checkDiskSpace fails below recordings.min_free_space, where recordings stop.
func (lc *Lifecycle) checkDiskSpace(context.Context) error {
	min := int64(lc.cfg.Recordings.MinFreeSpace)
	free, err := lc.statfs(lc.cfg.Recordings.Dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil // recordings_dir says the folder is gone
	case err != nil:
		return fmt.Errorf("cannot read the free space of recordings.dir: %w", err)
	case min > 0 && free < min:
		return fmt.Errorf("the recordings disk has %s free, less than recordings.min_free_space (%s): recordings stop", config.Size(free), config.Size(min))
	}
	return nil
}

// writeProbe checks that a folder takes a new file by creating, writing and removing
// one, at most every `every`; in between it answers what the last try found.
type writeProbe struct {
	dir, key string
	every    time.Duration
	now      func() time.Time

	mu   sync.Mutex
	last time.Time
	err  error
}

func (p *writeProbe) check(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := p.now(); p.last.IsZero() || now.Sub(p.last) >= p.every || now.Before(p.last) {
		p.last = now
		p.err = tryWrite(p.dir)
		if p.err != nil {
			p.err = fmt.Errorf("%s is not writable: %w", p.key, p.err)
		}
	}
	return p.err
}

// tryWrite creates a hidden file in dir, writes a byte to it and removes it.
func tryWrite(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a folder", dir)
	}
	f, err := os.CreateTemp(dir, ".healthz-*")
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte{0})
	return errors.Join(werr, f.Close(), os.Remove(f.Name()))
}

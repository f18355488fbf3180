package devtools

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// lockFile takes an exclusive flock on path, polling so that ctx can end the
// wait. The lock dies with the process, so a killed build never leaves it held.
func lockFile(ctx context.Context, path string, log zerolog.Logger) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening build lock %s: %w", path, err)
	}
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return nil, errors.Join(fmt.Errorf("locking %s: %w", path, err), f.Close())
		}
		if !logged {
			log.Info().Str("lock", path).Msg("another process is building this tool; waiting for it")
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, errors.Join(fmt.Errorf("waiting for build lock %s: %w", path, ctx.Err()), f.Close())
		case <-time.After(500 * time.Millisecond):
		}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// Package ctxtime holds the waits that end with a context: one place for what the
// lifecycle's loops, LiveKit's join back-off and the test media senders all need.
package ctxtime

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends, and returns ctx's error if it ended first (at once,
// without waiting, when d is not positive).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

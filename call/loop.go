// Package call holds what every call backend shares: the serial event loop that owns a
// call's state, and the status a backend reports.
package call

import (
	"context"

	"github.com/matrix-recorder/matrix-recorder/serial"
)

// Loop runs functions one at a time on its own goroutine, in the order they were posted.
// Posting never blocks, so pion callbacks (which must not block) can post safely. It is
// serial.Loop, which the recording lifecycle's row queues use too.
type Loop = serial.Loop

// NewLoop starts a loop that runs until ctx ends or Stop is called.
func NewLoop(ctx context.Context) *Loop { return serial.New(ctx) }

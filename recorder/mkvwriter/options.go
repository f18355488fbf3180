package mkvwriter

import (
	"errors"
	"fmt"
	"time"
)

// Option configures a Writer.
type Option func(*config) error

type config struct {
	syncOnFlush        bool
	clusterDuration    time.Duration
	maxClusterDuration time.Duration
	maxGap             time.Duration
	muxingApp          string
	writingApp         string
	date               time.Time
	bufferSize         int
}

// Defaults. A cluster never spans more than maxClusterSpan, the int16 range of block
// timecodes at a TimestampScale of 1 ms.
const (
	defaultClusterDuration    = time.Second
	defaultMaxClusterDuration = 5 * time.Second
	defaultMaxGap             = 6 * time.Hour
	defaultAppName            = "matrix-recorder"
	defaultBufferSize         = 16 << 10
	maxClusterSpan            = 32767 * time.Millisecond
)

func defaultConfig() config {
	return config{
		clusterDuration:    defaultClusterDuration,
		maxClusterDuration: defaultMaxClusterDuration,
		maxGap:             defaultMaxGap,
		muxingApp:          defaultAppName,
		writingApp:         defaultAppName,
		bufferSize:         defaultBufferSize,
	}
}

var errBadOption = errors.New("bad option")

// WithSyncOnFlush makes Flush fsync the file when the writer owns it (New). Off by default.
func WithSyncOnFlush(sync bool) Option {
	return func(c *config) error {
		c.syncOnFlush = sync
		return nil
	}
}

// WithClusterDuration sets how long a cluster runs at least before a video key frame starts
// the next one (default 1 s). Audio frames all count as key frames.
func WithClusterDuration(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 || d > maxClusterSpan {
			return fmt.Errorf("cluster duration %v: %w", d, errBadOption)
		}
		c.clusterDuration = d
		return nil
	}
}

// WithMaxGap sets the largest PTS jump a file absorbs as a gap (default 6 h; 0: no limit).
// A larger jump (a sender restart, an RTP timestamp wrap taken at face value) makes
// WriteFrame return an error wrapping media.ErrNewPart.
func WithMaxGap(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("max gap %v: %w", d, errBadOption)
		}
		c.maxGap = d
		return nil
	}
}

// WithWritingApp sets the WritingApp of the Info element (default "matrix-recorder").
func WithWritingApp(name string) Option {
	return func(c *config) error {
		c.writingApp = name
		return nil
	}
}

// WithBufferSize sets the size of the write buffer (default 16 KiB). Data in the buffer
// reaches the file at Flush, at Close, and whenever the buffer fills.
func WithBufferSize(n int) Option {
	return func(c *config) error {
		if n < 512 || n > 64<<20 {
			return fmt.Errorf("buffer size %d: %w", n, errBadOption)
		}
		c.bufferSize = n
		return nil
	}
}

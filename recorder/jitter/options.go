package jitter

// Defaults for New.
const (
	// DefaultCapacity is the number of packets a Buffer holds before it releases the oldest
	// without waiting any longer.
	DefaultCapacity = 512
	// DefaultMaxJump is the sequence number distance, ahead of the last released packet or
	// behind the next one due, beyond which a packet is taken as the start of a new stream
	// rather than a gap or a late arrival.
	DefaultMaxJump = 3000

	// restartRun late packets in a row, each following the one before, mean the stream
	// restarted with sequence numbers a little behind (within the jump limit) the ones
	// it used before: the run's last packet starts a new stream (Reset). A genuinely
	// late run this long (a block of packets held up longer than the buffer's delay
	// while later ones overtook it) is rare, and restarting on it only costs the
	// frame in progress.
	restartRun = 16

	// maxMaxJump keeps the jump below half the 16-bit sequence space, where unwrapping stops
	// being unambiguous.
	maxMaxJump = 1<<15 - 1
	// maxSlotPrealloc is how much payload room a slot gets before its first packet.
	maxSlotPrealloc = 1500
)

// Option configures a Buffer.
type Option func(*config)

type config struct {
	capacity int
	maxJump  int
}

// WithCapacity sets how many packets the buffer holds at most (default DefaultCapacity).
// When a packet arrives at a full buffer, the oldest packets are released at once and the
// missing ones before them declared lost. Values below 1 are raised to 1; values that do not
// fit the sequence window given by the jump limit are lowered to fit.
func WithCapacity(n int) Option {
	return func(c *config) { c.capacity = n }
}

// WithMaxJump sets the sequence number distance that counts as a stream restart (default
// DefaultMaxJump). Values are clamped to [1, 32767].
func WithMaxJump(n int) Option {
	return func(c *config) { c.maxJump = n }
}

func (c *config) normalise() {
	c.maxJump = min(max(c.maxJump, 1), maxMaxJump)
	c.capacity = max(c.capacity, 1)
	if limit := ringSizeFor(c.maxJump) - 1; c.capacity > limit {
		c.capacity = limit
	}
}

// ringSizeFor is the smallest power of two that holds every sequence number from the next one
// due up to maxJump ahead of it.
func ringSizeFor(maxJump int) int {
	size := 1
	for size <= maxJump {
		size <<= 1
	}
	return size
}

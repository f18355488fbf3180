package oggwriter

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// Defaults of the options.
const (
	// DefaultMaxPageBody is the page body size after which the writer starts a new page,
	// about one second of speech at 32 kbit/s.
	DefaultMaxPageBody = 4096
	// DefaultMaxGap is the largest jump forward between frames the writer accepts. A
	// participant can stay muted for a long time; ten hours is a broken clock.
	DefaultMaxGap = 6 * time.Hour
	// DefaultVendor is the vendor string of the comment header.
	DefaultVendor = "matrix-recorder"
)

// GapPolicy says what the writer does when a frame starts after the end of the previous
// one (DTX, a muted microphone, lost packets). See the package documentation for how
// players treat each.
type GapPolicy int

// Gap policies. The zero value is GapUnknown, which New treats as the default, GapKeep.
const (
	GapUnknown GapPolicy = iota
	// GapKeep writes nothing for the gap: it shows only as a jump in granule positions.
	GapKeep
	// GapSilence fills the gap with packets that decode to digital silence.
	GapSilence
	// GapConceal fills the gap with packets of empty frames, which ask the decoder for
	// packet loss concealment (RFC 7845 §4.1).
	GapConceal
)

// String returns the policy's name.
func (g GapPolicy) String() string {
	switch g {
	case GapKeep:
		return "keep"
	case GapSilence:
		return "silence"
	case GapConceal:
		return "conceal"
	default:
		return "unknown"
	}
}

// Option changes an optional setting of a Writer.
type Option func(*config)

// WithSerial sets the stream's serial number (default: random). Tests use it to get
// identical files.
func WithSerial(serial uint32) Option {
	return func(c *config) { c.serial, c.serialSet = serial, true }
}

// WithSyncOnFlush makes Flush sync the file to disk (fsync) after writing, so that a
// power loss, not only a crash of the process, keeps everything before the Flush. It
// applies to the file New opens and to a stream given to NewWith that has a Sync method
// (an *os.File).
func WithSyncOnFlush(sync bool) Option {
	return func(c *config) { c.syncOnFlush = sync }
}

// WithPreSkip sets the pre-skip of the identification header, the samples a player drops
// at the start (default 0: the file's timeline is exactly the frames' PTS).
func WithPreSkip(samples uint16) Option {
	return func(c *config) { c.preSkip = samples }
}

// WithVendor sets the vendor string of the comment header (default DefaultVendor).
func WithVendor(vendor string) Option {
	return func(c *config) { c.vendor = vendor }
}

// WithComments adds user comments, each "KEY=value" (for example "ARTIST=@alice:example.org").
// A non-empty TrackParams.Title adds "TITLE=..." unless a TITLE comment is given here.
func WithComments(comments ...string) Option {
	return func(c *config) { c.comments = append(c.comments, comments...) }
}

// WithMaxPageBody sets the page body size in bytes after which the writer starts a new
// page (default DefaultMaxPageBody, at most 65025, the most a page can hold). A single
// larger packet still goes on one page if its segment table fits.
func WithMaxPageBody(bytes int) Option {
	return func(c *config) { c.maxPageBody = bytes }
}

// WithMaxPagePackets sets how many packets may start on one page (default and largest
// 255); 1 gives a page per packet.
func WithMaxPagePackets(n int) Option {
	return func(c *config) { c.maxPagePackets = n }
}

// WithMaxGap sets the largest jump forward from the end of one frame to the start of the
// next that WriteFrame accepts (default DefaultMaxGap); 0 accepts any. A frame after a
// larger jump is refused with ErrGapTooLarge.
func WithMaxGap(d time.Duration) Option {
	return func(c *config) { c.maxGap = d }
}

// WithGapPolicy sets what the writer writes for a gap between frames (default GapKeep).
func WithGapPolicy(g GapPolicy) Option {
	return func(c *config) { c.gap = g }
}

// config is the writer's settings after defaults and checks.
type config struct {
	serial         uint32
	serialSet      bool
	syncOnFlush    bool
	preSkip        uint16
	vendor         string
	comments       []string
	maxPageBody    int
	maxPagePackets int
	maxGap         time.Duration
	gap            GapPolicy
	channels       uint8
}

// newConfig applies the options to the defaults and checks the result.
func newConfig(p media.TrackParams, opts []Option) (config, error) {
	c := config{
		vendor:         DefaultVendor,
		maxPageBody:    DefaultMaxPageBody,
		maxPagePackets: maxSegments,
		maxGap:         DefaultMaxGap,
	}
	for _, o := range opts {
		o(&c)
	}
	if p.ClockRate != 0 && p.ClockRate != opus.SampleRate {
		return c, fmt.Errorf("opus clock rate %d: must be %d", p.ClockRate, opus.SampleRate)
	}
	switch p.Channels {
	case 0:
		c.channels = 2
	case 1, 2:
		c.channels = uint8(p.Channels)
	default:
		return c, fmt.Errorf("opus with %d channels: only 1 or 2 are supported", p.Channels)
	}
	if c.maxPageBody < 1 || c.maxPageBody > maxSegments*255 {
		return c, fmt.Errorf("max page body of %d bytes: must be 1 to %d", c.maxPageBody, maxSegments*255)
	}
	if c.maxPagePackets < 1 || c.maxPagePackets > maxSegments {
		return c, fmt.Errorf("max page packets %d: must be 1 to %d", c.maxPagePackets, maxSegments)
	}
	if c.maxGap < 0 {
		return c, fmt.Errorf("max gap %v: must not be negative", c.maxGap)
	}
	switch c.gap {
	case GapUnknown:
		c.gap = GapKeep
	case GapKeep, GapSilence, GapConceal:
	default:
		return c, fmt.Errorf("unknown gap policy %d", int(c.gap))
	}
	if !utf8.ValidString(c.vendor) {
		return c, fmt.Errorf("vendor %q is not utf-8", c.vendor)
	}
	comments := make([]string, 0, len(c.comments)+1)
	hasTitle := false
	for _, cm := range c.comments {
		if err := checkComment(cm); err != nil {
			return c, err
		}
		if !utf8.ValidString(cm) {
			return c, fmt.Errorf("comment %q is not utf-8", cm)
		}
		key, _, _ := strings.Cut(cm, "=")
		hasTitle = hasTitle || strings.EqualFold(key, "TITLE")
		comments = append(comments, cm)
	}
	if p.Title != "" && !hasTitle {
		comments = append([]string{"TITLE=" + strings.ToValidUTF8(p.Title, "\uFFFD")}, comments...)
	}
	c.comments = comments
	return c, nil
}

package recorder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// newWriter opens the container writer the codec table gives the track's codec, with the
// file mode of Options.
func newWriter(t *Track, path string, o Options) (media.Writer, error) {
	w, err := t.codec.NewWriter(path, writerParams(t), writerOptions(t, o))
	if err == nil && o.FileMode != 0 {
		if cerr := os.Chmod(path, o.FileMode); cerr != nil {
			return nil, errors.Join(fmt.Errorf("chmod %s: %w", filepath.Base(path), cerr), w.Close())
		}
	}
	return w, err
}

// writerParams describes a track to its container writer.
func writerParams(t *Track) media.TrackParams {
	channels := t.info.Channels
	if channels == 0 {
		channels = t.codec.Channels
	}
	return media.TrackParams{ClockRate: t.info.ClockRate, Channels: channels, Title: trackTitle(t.info)}
}

// writerOptions are the recorder's settings for a track's writer.
func writerOptions(t *Track, o Options) codec.WriterOptions {
	return codec.WriterOptions{
		Fsync: o.Fsync, FillGaps: o.GapPolicy == GapFill, Title: trackTitle(t.info), Artist: t.info.UserID, App: o.Version,
	}
}

func trackTitle(i TrackInfo) string {
	who := i.UserID
	if i.DisplayName != "" {
		who = i.DisplayName + " (" + i.UserID + ")"
	}
	s := who + " " + i.source()
	if i.DeviceID != "" {
		s += " [" + i.DeviceID + "]"
	}
	// Keep titles printable and bounded: they come from the network.
	return Printable(s, 200)
}

// Printable keeps a name that came from the network printable (control characters become
// spaces) and at most n characters long, for titles and manifest fields.
func Printable(s string, n int) string {
	out := make([]rune, 0, min(len(s), n))
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		out = append(out, r)
		if len(out) >= n {
			break
		}
	}
	return string(out)
}

package recorder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter"
	"github.com/matrix-recorder/matrix-recorder/recorder/oggwriter"
)

// newWriter opens the container writer for a track's codec: Opus in Ogg, VP8/VP9/AV1 in
// WebM, H.264 in Matroska, with the file mode of Options.
func newWriter(t *Track, path string, o Options) (media.Writer, error) {
	w, err := openWriter(t, path, o)
	if err == nil && o.FileMode != 0 {
		if cerr := os.Chmod(path, o.FileMode); cerr != nil {
			return nil, errors.Join(fmt.Errorf("chmod %s: %w", filepath.Base(path), cerr), w.Close())
		}
	}
	return w, err
}

func openWriter(t *Track, path string, o Options) (media.Writer, error) {
	switch t.codec {
	case media.CodecOpus:
		return oggwriter.New(path, writerParams(t), oggOptions(t, o)...)
	case media.CodecVP8, media.CodecVP9, media.CodecAV1, media.CodecH264:
		return mkvwriter.New(path, writerParams(t), mkvOptions(o)...)
	default:
		return nil, fmt.Errorf("no writer for codec %s", t.codec)
	}
}

// writerParams describes a track to its container writer.
func writerParams(t *Track) media.TrackParams {
	channels := t.info.Channels
	if channels == 0 && t.codec == media.CodecOpus {
		channels = 2
	}
	return media.TrackParams{
		Codec:     t.codec,
		ClockRate: t.info.ClockRate,
		Channels:  channels,
		Title:     trackTitle(t.info),
	}
}

func oggOptions(t *Track, o Options) []oggwriter.Option {
	gp := oggwriter.GapConceal
	if o.GapPolicy == GapFill {
		gp = oggwriter.GapSilence
	}
	return []oggwriter.Option{
		oggwriter.WithSyncOnFlush(o.Fsync),
		// The usual encoder delay: players expect it (opusinfo warns below it). PTS
		// still maps exactly onto the file's timeline; the first 6.5 ms are dropped.
		oggwriter.WithPreSkip(opusPreSkip),
		oggwriter.WithGapPolicy(gp),
		oggwriter.WithComments("TITLE="+trackTitle(t.info), "ARTIST="+t.info.UserID),
	}
}

func mkvOptions(o Options) []mkvwriter.Option {
	return []mkvwriter.Option{mkvwriter.WithSyncOnFlush(o.Fsync), mkvwriter.WithWritingApp(o.Version)}
}

// opusPreSkip is libopus's encoder delay at 48 kHz.
const opusPreSkip = 312

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
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		out = append(out, r)
		if len(out) >= 200 {
			break
		}
	}
	return string(out)
}

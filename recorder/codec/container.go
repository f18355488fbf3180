package codec

import (
	"fmt"
	"io"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/media"
	"github.com/matrix-recorder/matrix-recorder/recorder/mkvwriter"
	"github.com/matrix-recorder/matrix-recorder/recorder/oggwriter"
)

// Container is a file format the recorder writes: one file per part of a track.
type Container struct {
	// Name is the format's name ("ogg", "webm", "matroska").
	Name string
	// Extension is the file extension, with its dot.
	Extension string
	// ContentType is the file's media type, for downloads and object storage.
	ContentType string
	// EBML: the format is WebM or Matroska, whose clusters the uploader follows.
	EBML bool

	open     func(path string, s *Spec, p media.TrackParams, o WriterOptions) (media.Writer, error)
	openWith func(ws io.WriteSeeker, s *Spec, p media.TrackParams, o WriterOptions) (media.Writer, error)
	repair   func(path string) (time.Duration, error)
}

// WriterOptions are the recorder's settings for a file's writer.
type WriterOptions struct {
	// Fsync makes every flush an fsync.
	Fsync bool
	// FillGaps writes silence into every audio gap; otherwise gaps are left to the
	// decoder's loss concealment.
	FillGaps bool
	// Title and Artist describe the track in the file.
	Title, Artist string
	// App names the recorder and its version in the file.
	App string
}

// Repair makes a file of this format that a crash left behind playable and returns how
// long it plays.
func (c *Container) Repair(path string) (time.Duration, error) {
	return c.repair(path)
}

// The containers.
var (
	// Ogg holds Opus (RFC 7845), written by oggwriter.
	Ogg = &Container{Name: "ogg", Extension: ".ogg", ContentType: "audio/ogg", open: openOgg, openWith: openOggWith, repair: repairOgg}
	// WebM holds VP8, VP9 and AV1 (and could hold Opus), written by mkvwriter.
	WebM = &Container{Name: "webm", Extension: ".webm", ContentType: "video/webm", EBML: true,
		open: openMatroska, openWith: openMatroskaWith, repair: repairMatroska}
	// Matroska holds H.264, which WebM cannot, written by mkvwriter.
	Matroska = &Container{Name: "matroska", Extension: ".mkv", ContentType: "video/x-matroska", EBML: true,
		open: openMatroska, openWith: openMatroskaWith, repair: repairMatroska}
)

var containers = []*Container{Ogg, WebM, Matroska}

// ContentType returns the media type of a file of the call folder from its name.
func ContentType(file string) string {
	if c, ok := ContainerOf(file); ok {
		return c.ContentType
	}
	return "application/octet-stream"
}

// opusPreSkip is libopus's encoder delay at 48 kHz, the pre-skip players expect (opusinfo
// warns below it). PTS still maps exactly onto the file's timeline; the first 6.5 ms are
// dropped.
const opusPreSkip = 312

func openOgg(path string, s *Spec, p media.TrackParams, o WriterOptions) (media.Writer, error) {
	if s.ID != media.CodecOpus {
		return nil, fmt.Errorf("ogg holds opus, not %s", s.ID)
	}
	return oggwriter.New(path, p, oggOptions(o)...)
}

func openOggWith(ws io.WriteSeeker, s *Spec, p media.TrackParams, o WriterOptions) (media.Writer, error) {
	if s.ID != media.CodecOpus {
		return nil, fmt.Errorf("ogg holds opus, not %s", s.ID)
	}
	return oggwriter.NewWith(ws, p, oggOptions(o)...)
}

func oggOptions(o WriterOptions) []oggwriter.Option {
	gp := oggwriter.GapConceal
	if o.FillGaps {
		gp = oggwriter.GapSilence
	}
	return []oggwriter.Option{
		oggwriter.WithSyncOnFlush(o.Fsync),
		oggwriter.WithPreSkip(opusPreSkip),
		oggwriter.WithGapPolicy(gp),
		oggwriter.WithComments("TITLE="+o.Title, "ARTIST="+o.Artist),
	}
}

func repairOgg(path string) (time.Duration, error) {
	r, err := oggwriter.Repair(path)
	return r.Duration, err
}

func openMatroska(path string, s *Spec, p media.TrackParams, o WriterOptions) (media.Writer, error) {
	return mkvwriter.New(path, s.Matroska, p, matroskaOptions(o)...)
}

func openMatroskaWith(ws io.WriteSeeker, s *Spec, p media.TrackParams, o WriterOptions) (media.Writer, error) {
	return mkvwriter.NewWith(ws, s.Matroska, p, matroskaOptions(o)...)
}

func matroskaOptions(o WriterOptions) []mkvwriter.Option {
	return []mkvwriter.Option{mkvwriter.WithSyncOnFlush(o.Fsync), mkvwriter.WithWritingApp(o.App)}
}

func repairMatroska(path string) (time.Duration, error) {
	r, err := mkvwriter.Repair(path)
	return r.Duration, err
}

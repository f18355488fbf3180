package codec

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// TestTableIsComplete: every entry says everything the program asks of a codec, and the
// lookups find it by its MIME type (in any case), its ID and its files.
func TestTableIsComplete(t *testing.T) {
	pts := map[uint8]media.Codec{}
	for _, c := range All() {
		if c.ID == media.CodecUnknown || c.Kind == KindUnknown || c.ClockRate == 0 || c.Container == nil ||
			c.Depacketizer == nil || len(c.RTP) == 0 {
			t.Errorf("%s: incomplete entry %+v", c.ID, c)
		}
		if (c.Audio != nil) != (c.Kind == Audio) {
			t.Errorf("%s: audio frames %v for a %s codec", c.ID, c.Audio != nil, c.Kind)
		}
		if c.Container.EBML && c.Matroska.String() != string(c.ID) {
			t.Errorf("%s: written to %s with the Matroska mapping of %s", c.ID, c.Container.Name, c.Matroska)
		}
		for _, m := range []string{c.MimeType, strings.ToLower(c.MimeType)} {
			if got, ok := ByMimeType(m); !ok || got != c {
				t.Errorf("ByMimeType(%q) = %v, %v", m, got, ok)
			}
		}
		if got, ok := Of(c.ID); !ok || got != c {
			t.Errorf("Of(%s) = %v, %v", c.ID, got, ok)
		}
		if got, ok := ContainerOf("x/y.part2" + c.Container.Extension); !ok || got != c.Container {
			t.Errorf("ContainerOf(%s) = %v, %v", c.Container.Extension, got, ok)
		}
		// Video takes two payload types a format (the codec's and its RTX); none is used twice.
		for _, f := range c.RTP {
			use := []uint8{f.PayloadType}
			if c.IsVideo() {
				use = append(use, f.PayloadType+1)
			}
			for _, pt := range use {
				if other, ok := pts[pt]; ok {
					t.Errorf("payload type %d of %s is taken by %s", pt, c.ID, other)
				}
				pts[pt] = c.ID
			}
		}
	}
	if _, ok := ByMimeType("video/H265"); ok {
		t.Error("found a codec the recorder cannot write")
	}
	if got := ContentType("a.webm"); got != "video/webm" {
		t.Errorf("content type of a.webm: %s", got)
	}
	if got := ContentType("manifest.json"); got != "application/octet-stream" {
		t.Errorf("content type of manifest.json: %s", got)
	}
}

// TestEveryCodecWritesItsContainer: the writer the table gives each codec makes a file of
// the table's container, which its Repair reads back.
func TestEveryCodecWritesItsContainer(t *testing.T) {
	for _, a := range testmedia.Assets() {
		c, ok := ByMimeType(a.MimeType)
		if !ok {
			t.Errorf("no codec for the test asset %s (%s)", a.Name, a.MimeType)
			continue
		}
		t.Run(a.Name, func(t *testing.T) {
			frames, err := testmedia.Frames(a.Name)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "track"+c.Container.Extension)
			w, err := c.NewWriter(path, media.TrackParams{ClockRate: c.ClockRate, Channels: c.Channels, Title: a.Name},
				WriterOptions{Title: a.Name, Artist: "@alice:example.org", App: "test"})
			if err != nil {
				t.Fatal(err)
			}
			var pts time.Duration
			for i, f := range frames[:30] {
				if err := w.WriteFrame(media.Frame{Data: f.Data, PTS: pts, Duration: durationIf(c, f), Keyframe: f.Keyframe}); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				pts += f.Duration
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			cont, ok := ContainerOf(path)
			if !ok || cont != c.Container {
				t.Fatalf("file %s is not in %s", path, c.Container.Name)
			}
			if d, err := cont.Repair(path); err != nil || d <= 0 {
				t.Errorf("repair: %v, %v", d, err)
			}
		})
	}
}

func durationIf(c *Spec, f testmedia.Frame) time.Duration {
	if c.Audio == nil {
		return 0
	}
	return f.Duration
}

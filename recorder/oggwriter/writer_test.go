package oggwriter

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

const ms20 = 20 * time.Millisecond

// silence20 is a valid 20 ms packet for tests that do not care about the audio.
var silence20 = []byte{31 << 3, 0xff, 0xfe}

func newBuffered(t testing.TB, opts ...Option) (*Writer, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWith(&buf, opusParams(), append([]Option{WithSerial(0x1234)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return w, &buf
}

func TestHeadersReadByPion(t *testing.T) {
	var buf bytes.Buffer
	p := media.TrackParams{ClockRate: 48000, Channels: 1, Title: "@alice:example.org (DEV) microphone"}
	w, err := NewWith(&buf, p, WithSerial(7), WithPreSkip(312), WithVendor("test vendor"), WithComments("ARTIST=alice", "ROOM=!r:example.org"))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, head, err := oggreader.NewWith(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if head.Channels != 1 || head.PreSkip != 312 || head.SampleRate != 48000 || head.Version != 1 || head.ChannelMap != 0 || head.OutputGain != 0 {
		t.Fatalf("OpusHead = %+v", head)
	}
	payload, ph, err := r.ParseNextPage()
	if err != nil {
		t.Fatal(err)
	}
	if ph.Serial != 7 || ph.GranulePosition != 0 {
		t.Fatalf("tags page header %+v", ph)
	}
	tags, err := oggreader.ParseOpusTags(payload)
	if err != nil {
		t.Fatal(err)
	}
	if tags.Vendor != "test vendor" {
		t.Errorf("vendor %q", tags.Vendor)
	}
	var comments []string
	for _, c := range tags.UserComments {
		comments = append(comments, c.Comment+"="+c.Value)
	}
	want := []string{"TITLE=@alice:example.org (DEV) microphone", "ARTIST=alice", "ROOM=!r:example.org"}
	if !slices.Equal(comments, want) {
		t.Errorf("comments %q, want %q", comments, want)
	}

	s := readOgg(t, buf.Bytes())
	if len(s.pages) != 3 {
		t.Fatalf("%d pages, want head, tags, eos", len(s.pages))
	}
	// No audio: the end packet's granule position is the pre-skip, a duration of 0.
	for i, wantFlags := range []byte{flagBOS, 0, flagEOS} {
		pg := s.pages[i]
		if pg.flags != wantFlags || pg.granule != []int64{0, 0, 312}[i] || pg.serial != 7 || pg.seq != uint32(i) {
			t.Errorf("page %d: flags %#x granule %d serial %d seq %d", i, pg.flags, pg.granule, pg.serial, pg.seq)
		}
	}
	if n := s.pages[0].Packets(); n != 1 || len(s.pages[0].body) != 19 {
		t.Errorf("head page: %d packets, %d bytes", n, len(s.pages[0].body))
	}
	if n := s.pages[1].Packets(); n != 1 {
		t.Errorf("tags page: %d packets", n)
	}
}

func TestTitleOverriddenByComment(t *testing.T) {
	var buf bytes.Buffer
	p := opusParams()
	p.Title = "from params"
	if _, err := NewWith(&buf, p, WithComments("title=mine")); err != nil {
		t.Fatal(err)
	}
	s := readOgg(t, buf.Bytes())
	tags, err := oggreader.ParseOpusTags(s.packets[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(tags.UserComments) != 1 || tags.UserComments[0].Value != "mine" {
		t.Fatalf("comments %+v", tags.UserComments)
	}
}

func TestConfigErrors(t *testing.T) {
	good := opusParams()
	tests := []struct {
		name string
		p    media.TrackParams
		opts []Option
	}{
		{"clock rate", media.TrackParams{ClockRate: 90000}, nil},
		{"channels", media.TrackParams{Channels: 6}, nil},
		{"comment without =", good, []Option{WithComments("TITLE")}},
		{"comment empty key", good, []Option{WithComments("=x")}},
		{"comment key with =", good, []Option{WithComments("A\x7eB=x")}},
		{"comment not utf-8", good, []Option{WithComments("A=\xff")}},
		{"vendor not utf-8", good, []Option{WithVendor("\xff")}},
		{"page body", good, []Option{WithMaxPageBody(0)}},
		{"page body too large", good, []Option{WithMaxPageBody(65026)}},
		{"page packets", good, []Option{WithMaxPagePackets(256)}},
		{"no page packets", good, []Option{WithMaxPagePackets(0)}},
		{"negative gap", good, []Option{WithMaxGap(-time.Second)}},
		{"gap policy", good, []Option{WithGapPolicy(GapPolicy(42))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if _, err := NewWith(&buf, tt.p, tt.opts...); err == nil {
				t.Fatal("no error")
			}
			if buf.Len() != 0 {
				t.Fatal("wrote before failing")
			}
			path := filepath.Join(t.TempDir(), "x.ogg")
			if _, err := New(path, tt.p, tt.opts...); err == nil {
				t.Fatal("New: no error")
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("New left a file: %v", err)
			}
		})
	}
}

func TestDefaultChannelsAndGapPolicyNames(t *testing.T) {
	var buf bytes.Buffer
	if _, err := NewWith(&buf, media.TrackParams{}); err != nil {
		t.Fatal(err)
	}
	if ch, preSkip, ok := ParseOpusHead(readOgg(t, buf.Bytes()).packets[0]); !ok || ch != 2 || preSkip != 0 {
		t.Fatalf("default head: %d channels, pre-skip %d", ch, preSkip)
	}
	for g, want := range map[GapPolicy]string{GapUnknown: "unknown", GapKeep: "keep", GapSilence: "silence", GapConceal: "conceal", 9: "unknown"} {
		if g.String() != want {
			t.Errorf("%d.String() = %q", int(g), g.String())
		}
	}
}

// checkStream checks what every finished stream must be: valid pages in sequence, one
// BOS page first, one EOS page last, granule positions that never go down, and the
// audio packets in order. It returns the stream.
func checkStream(t testing.TB, b []byte, wantPackets [][]byte) oggStream {
	t.Helper()
	s := readOgg(t, b)
	if s.rest != 0 {
		t.Fatalf("%d bytes after the last page", s.rest)
	}
	for i, p := range s.pages {
		if (p.flags&flagBOS != 0) != (i == 0) || (p.flags&flagEOS != 0) != (i == len(s.pages)-1) {
			t.Fatalf("page %d of %d has flags %#x", i, len(s.pages), p.flags)
		}
	}
	last := int64(0)
	for i, p := range s.pages {
		if p.granule == noGranule {
			continue
		}
		if p.granule < last {
			t.Fatalf("page %d granule %d after %d", i, p.granule, last)
		}
		last = p.granule
	}
	if wantPackets != nil {
		got := s.audio()
		if len(got) != len(wantPackets) {
			t.Fatalf("%d audio packets, want %d", len(got), len(wantPackets))
		}
		for i := range got {
			if !bytes.Equal(got[i], wantPackets[i]) {
				t.Fatalf("packet %d differs", i)
			}
		}
	}
	// pion's reader, with checksums on, reads every page.
	r, _, err := oggreader.NewWith(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; ; n++ {
		if _, _, err := r.ParseNextPage(); errors.Is(err, io.EOF) {
			if n != len(s.pages) {
				t.Fatalf("pion read %d pages, we %d", n, len(s.pages))
			}
			break
		} else if err != nil {
			t.Fatalf("pion page %d: %v", n, err)
		}
	}
	return s
}

func TestRoundTripGranulesFromPTS(t *testing.T) {
	for _, file := range []string{"sine440.ogg", "voip60ms.ogg"} {
		t.Run(file, func(t *testing.T) {
			packets := fixturePackets(t, file)
			w, buf := newBuffered(t)
			end := writeFrames(t, w, packets, 0, nil)
			if w.Duration() != end {
				t.Fatalf("Duration() = %v, want %v", w.Duration(), end)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			s := checkStream(t, buf.Bytes(), packets)
			// Every page's granule is the end of the last packet that ends on it.
			pts := int64(0)
			for i, p := range s.packets[2:] {
				n, _ := opus.Samples(p)
				pts += int64(n)
				if g := s.packetGranule[i+2]; g != -2 && g != pts {
					t.Fatalf("packet %d: page granule %d, want %d", i, g, pts)
				}
			}
			if got := s.pages[len(s.pages)-1].granule; got != pts {
				t.Fatalf("last granule %d, want %d", got, pts)
			}
			if len(s.pages) > 2+len(packets)/10 {
				t.Fatalf("%d pages for %d packets: too many", len(s.pages), len(packets))
			}
		})
	}
}

func TestGapShowsInGranules(t *testing.T) {
	w, buf := newBuffered(t, WithMaxPagePackets(1))
	frames := []time.Duration{0, ms20, 2 * ms20, 10 * time.Second, 10*time.Second + ms20}
	for _, pts := range frames {
		if err := w.WriteFrame(media.Frame{Data: silence20, PTS: pts, Duration: ms20}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s := checkStream(t, buf.Bytes(), [][]byte{silence20, silence20, silence20, silence20, silence20})
	var got []int64
	for _, g := range s.packetGranule[2:] {
		got = append(got, g)
	}
	want := []int64{960, 1920, 2880, 480960, 481920}
	if !slices.Equal(got, want) {
		t.Fatalf("granules %v, want %v", got, want)
	}
}

func TestGapFill(t *testing.T) {
	for _, g := range []GapPolicy{GapSilence, GapConceal} {
		t.Run(g.String(), func(t *testing.T) {
			w, buf := newBuffered(t, WithGapPolicy(g), WithPreSkip(100))
			stereo20 := []byte{31<<3 | 4, 1, 2, 3}
			// A leading gap of 1 s, then a gap of 57.5 ms + 1 sample after the first frame.
			first := time.Second
			second := first + ms20 + 57500*time.Microsecond + opus.SamplesToDuration(1)
			for _, pts := range []time.Duration{first, second} {
				if err := w.WriteFrame(media.Frame{Data: stereo20, PTS: pts}); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			s := checkStream(t, buf.Bytes(), nil)
			audio := s.packets[2:]
			// 50 fills, the frame, 2x20 + 10 + 5 + 2.5 ms of fill, the frame.
			if len(audio) != 50+1+5+1 {
				t.Fatalf("%d packets", len(audio))
			}
			total := int64(0)
			for i, p := range audio {
				n, err := opus.Samples(p)
				if err != nil {
					t.Fatalf("fill packet %d %x: %v", i, p, err)
				}
				total += int64(n)
				if i == 50 || i == 56 {
					if !bytes.Equal(p, stereo20) {
						t.Fatalf("packet %d is %x", i, p)
					}
					continue
				}
				switch g {
				case GapSilence:
					if len(p) != 3 || p[1] != 0xff || p[2] != 0xfe || p[0]>>3 < 28 || p[0]&7 != 0 {
						t.Fatalf("silence packet %d: %x", i, p)
					}
				case GapConceal:
					if len(p) != 1 {
						t.Fatalf("conceal packet %d: %x", i, p)
					}
					if i > 50 && n == 960 && p[0] != stereo20[0] {
						t.Fatalf("conceal packet %d does not repeat the previous toc: %x", i, p)
					}
					if i > 50 && p[0]&4 == 0 {
						t.Fatalf("conceal packet %d lost the stereo flag: %x", i, p)
					}
				}
			}
			wantEnd := opus.DurationToSamples(second) + 960
			if total != wantEnd-1 {
				t.Fatalf("packets hold %d samples, want %d (the 1-sample rest is no packet)", total, wantEnd-1)
			}
			if got := s.pages[len(s.pages)-1].granule; got != wantEnd+100 {
				t.Fatalf("last granule %d, want %d", got, wantEnd+100)
			}
		})
	}
}

// paddedPacket returns a valid 20 ms code 3 packet of exactly n bytes (n >= 4): one
// frame of one byte and padding.
func paddedPacket(n int) []byte {
	p := []byte{31<<3 | 3, 0x41}
	pad := n - 2 - 1 // padding bytes plus padding length bytes
	// find k length bytes such that (k-1)*254 + last + k == pad with last < 255
	for k := 1; ; k++ {
		last := pad - k - (k-1)*254
		if last >= 0 && last < 255 {
			for range k - 1 {
				p = append(p, 255)
			}
			p = append(p, byte(last))
			break
		}
	}
	p = append(p, 7)
	for len(p) < n {
		p = append(p, 0)
	}
	return p
}

func TestPaddedPacketHelper(t *testing.T) {
	for _, n := range []int{4, 5, 255, 256, 257, 258, 511, 65025, 65026, 100000} {
		p := paddedPacket(n)
		if len(p) != n {
			t.Fatalf("len %d, want %d", len(p), n)
		}
		if d, err := opus.Duration(p); err != nil || d != ms20 {
			t.Fatalf("padded packet of %d: %v %v", n, d, err)
		}
	}
}

func TestPacketsAcrossPages(t *testing.T) {
	for _, tt := range []struct {
		name    string
		sizes   []int
		options []Option
	}{
		// 255*255 bytes need 256 lacing values: 255 of 255 and a 0 on the next page.
		{"exactly 255 segments of 255", []int{3, 255 * 255, 3}, nil},
		{"larger than a page", []int{3, 100000, 3, 200000}, nil},
		{"multiple of 255", []int{255, 510, 765}, []Option{WithMaxPageBody(300)}},
		{"fills the segment table", []int{254 * 255, 255 + 10}, nil},
		{"page per packet", []int{3, 70000, 3, 3}, []Option{WithMaxPagePackets(1)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, buf := newBuffered(t, tt.options...)
			var want [][]byte
			for i, n := range tt.sizes {
				p := paddedPacket(max(n, 4))
				want = append(want, p)
				if err := w.WriteFrame(media.Frame{Data: p, PTS: time.Duration(i) * ms20}); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			s := checkStream(t, buf.Bytes(), want)
			sawContinued := false
			for i, p := range s.pages {
				if len(p.lacing) > maxSegments {
					t.Fatalf("page %d: %d segments", i, len(p.lacing))
				}
				if p.flags&flagContinued != 0 {
					sawContinued = true
				}
				if p.Packets() == 0 && len(p.lacing) > 0 && p.granule != noGranule {
					t.Fatalf("page %d: no packet ends, granule %d", i, p.granule)
				}
			}
			if slices.Max(tt.sizes) >= 255*255 && !sawContinued {
				t.Fatal("no continued page")
			}
			for i, g := range s.packetGranule[2:] {
				if g != -2 && g != int64(i+1)*960 {
					t.Fatalf("packet %d: granule %d", i, g)
				}
			}
		})
	}
}

func TestPageLimits(t *testing.T) {
	packets := fixturePackets(t, "sine440.ogg")
	t.Run("default", func(t *testing.T) {
		w, buf := newBuffered(t)
		writeFrames(t, w, packets, 0, nil)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		s := checkStream(t, buf.Bytes(), packets)
		for i, p := range s.pages[2 : len(s.pages)-1] {
			if len(p.body) > DefaultMaxPageBody {
				t.Fatalf("page %d body %d bytes", i, len(p.body))
			}
			if len(p.body)+len(packets[0])*2 < DefaultMaxPageBody {
				t.Fatalf("page %d emitted early with %d bytes", i, len(p.body))
			}
		}
	})
	t.Run("page per packet", func(t *testing.T) {
		w, buf := newBuffered(t, WithMaxPagePackets(1))
		writeFrames(t, w, packets, 0, nil)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		s := checkStream(t, buf.Bytes(), packets)
		if len(s.pages) != 2+len(packets) {
			t.Fatalf("%d pages for %d packets", len(s.pages), len(packets))
		}
	})
	t.Run("255 packets", func(t *testing.T) {
		w, buf := newBuffered(t, WithMaxPageBody(65025))
		for i := range 600 {
			if err := w.WriteFrame(media.Frame{Data: silence20, PTS: time.Duration(i) * ms20}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		s := checkStream(t, buf.Bytes(), nil)
		if n := len(s.pages[2].lacing); n != 255 {
			t.Fatalf("first audio page has %d segments", n)
		}
	})
}

func TestFlushLeavesPlayableStream(t *testing.T) {
	packets := fixturePackets(t, "sine440.ogg")
	w, buf := newBuffered(t)
	for i, p := range packets {
		pts := time.Duration(i) * ms20
		if err := w.WriteFrame(media.Frame{Data: p, PTS: pts}); err != nil {
			t.Fatal(err)
		}
		if i%7 != 0 {
			continue
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		s := readOgg(t, buf.Bytes())
		if s.rest != 0 {
			t.Fatalf("after flush %d: %d bytes after the last page", i, s.rest)
		}
		if len(s.packets) != i+3 {
			t.Fatalf("after flush %d: %d packets", i, len(s.packets))
		}
		if g := s.pages[len(s.pages)-1].granule; g != int64(i+1)*960 {
			t.Fatalf("after flush %d: last granule %d", i, g)
		}
	}
	// A flush with nothing buffered writes nothing.
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	n := buf.Len()
	if err := w.Flush(); err != nil || buf.Len() != n {
		t.Fatalf("empty flush: %v, %d -> %d bytes", err, n, buf.Len())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s := checkStream(t, buf.Bytes(), packets)
	if last := s.pages[len(s.pages)-1]; !s.endTrimmed() || last.granule != int64(len(packets))*960 {
		t.Fatalf("eos page after flush: %d segments, granule %d", len(last.lacing), last.granule)
	}
}

func TestHostileFrames(t *testing.T) {
	w, buf := newBuffered(t)
	good := func(pts time.Duration) {
		t.Helper()
		if err := w.WriteFrame(media.Frame{Data: silence20, PTS: pts}); err != nil {
			t.Fatalf("frame at %v: %v", pts, err)
		}
	}
	bad := func(f media.Frame, want error) {
		t.Helper()
		if err := w.WriteFrame(f); !errors.Is(err, want) {
			t.Fatalf("frame %x at %v: %v, want %v", f.Data, f.PTS, err, want)
		} else if msg := err.Error(); msg != strings.ToLower(msg[:1])+msg[1:] {
			t.Fatalf("error %q starts upper case", msg)
		}
	}
	good(0)
	bad(media.Frame{PTS: ms20}, ErrInvalidPacket)
	bad(media.Frame{Data: []byte{}, PTS: ms20}, ErrInvalidPacket)
	bad(media.Frame{Data: []byte{0xff, 0x00}, PTS: ms20}, ErrInvalidPacket) // code 3, 0 frames
	bad(media.Frame{Data: []byte{0xfd, 1}, PTS: ms20}, ErrInvalidPacket)    // code 1, odd
	bad(media.Frame{Data: silence20, PTS: ms20, Duration: 10 * time.Millisecond}, ErrInvalidPacket)
	bad(media.Frame{Data: silence20, PTS: ms20, Duration: -ms20}, ErrInvalidPacket)
	bad(media.Frame{Data: silence20, PTS: 0}, ErrBackwards)                     // duplicate
	bad(media.Frame{Data: silence20, PTS: 10 * time.Millisecond}, ErrBackwards) // overlap
	bad(media.Frame{Data: silence20, PTS: -time.Second}, ErrBackwards)
	bad(media.Frame{Data: silence20, PTS: -1 << 63}, ErrBackwards)
	bad(media.Frame{Data: silence20, PTS: 10 * time.Hour}, ErrGapTooLarge)
	bad(media.Frame{Data: silence20, PTS: 1<<63 - 1}, ErrGapTooLarge)
	good(ms20)
	if err := w.WriteFrame(media.Frame{Data: silence20, PTS: 2 * ms20, Duration: ms20}); err != nil {
		t.Fatal(err)
	}
	good(DefaultMaxGap + 3*ms20) // exactly the largest gap
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s := checkStream(t, buf.Bytes(), [][]byte{silence20, silence20, silence20, silence20})
	if g := s.pages[len(s.pages)-1].granule; g != opus.DurationToSamples(DefaultMaxGap+4*ms20) {
		t.Fatalf("last granule %d", g)
	}

	// Without a limit, even the largest PTS is a position, not an overflow.
	w, buf = newBuffered(t, WithMaxGap(0))
	huge := time.Duration(1<<63 - 1).Truncate(ms20)
	if err := w.WriteFrame(media.Frame{Data: silence20, PTS: huge}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s = checkStream(t, buf.Bytes(), [][]byte{silence20})
	if g := s.pages[len(s.pages)-1].granule; g != opus.DurationToSamples(huge)+960 || g < 0 {
		t.Fatalf("granule %d", g)
	}
}

func TestCloseAndAfterClose(t *testing.T) {
	w, buf := newBuffered(t)
	if err := w.WriteFrame(media.Frame{Data: silence20}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	n := buf.Len()
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.WriteFrame(media.Frame{Data: silence20, PTS: ms20}); !errors.Is(err, media.ErrClosed) {
		t.Fatalf("WriteFrame after Close: %v", err)
	}
	if err := w.Flush(); !errors.Is(err, media.ErrClosed) {
		t.Fatalf("Flush after Close: %v", err)
	}
	if buf.Len() != n {
		t.Fatal("wrote after Close")
	}
	// The buffered packet went out on the EOS page itself.
	s := checkStream(t, buf.Bytes(), [][]byte{silence20})
	if len(s.pages) != 3 || s.pages[2].granule != 960 {
		t.Fatalf("%d pages, last granule %d", len(s.pages), s.pages[len(s.pages)-1].granule)
	}
}

// failingWriter fails every write after the first ok bytes.
type failingWriter struct {
	ok      int
	written bytes.Buffer
	syncs   int
}

var errDiskFull = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.written.Len()+len(p) > f.ok {
		n := f.ok - f.written.Len()
		f.written.Write(p[:n])
		return n, errDiskFull
	}
	return f.written.Write(p)
}

func (f *failingWriter) Sync() error { f.syncs++; return nil }

func TestWriteErrors(t *testing.T) {
	if _, err := NewWith(&failingWriter{ok: 30}, opusParams()); !errors.Is(err, errDiskFull) {
		t.Fatalf("NewWith on a failing stream: %v", err)
	}
	fw := &failingWriter{ok: 200}
	w, err := NewWith(fw, opusParams(), WithMaxPagePackets(1))
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	for i := 0; werr == nil && i < 100; i++ {
		werr = w.WriteFrame(media.Frame{Data: silence20, PTS: time.Duration(i) * ms20})
	}
	// The error says both what failed underneath and that the writer is broken for good
	// (media.ErrWrite: the caller goes on in a new file).
	if !errors.Is(werr, errDiskFull) || !errors.Is(werr, media.ErrWrite) {
		t.Fatalf("WriteFrame: %v", werr)
	}
	// The writer refuses everything after a failed write: the stream's end is torn.
	if err := w.WriteFrame(media.Frame{Data: silence20, PTS: time.Hour}); !errors.Is(err, errDiskFull) || !errors.Is(err, media.ErrWrite) {
		t.Fatalf("WriteFrame after failure: %v", err)
	}
	if err := w.Flush(); !errors.Is(err, errDiskFull) || !errors.Is(err, media.ErrWrite) {
		t.Fatalf("Flush after failure: %v", err)
	}
	if err := w.Close(); !errors.Is(err, errDiskFull) || !errors.Is(err, media.ErrWrite) {
		t.Fatalf("Close after failure: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s := readOgg(t, fw.written.Bytes()); s.rest == 0 {
		t.Fatal("expected a torn page at the end")
	}
}

func TestSyncAndFlushOfStream(t *testing.T) {
	fw := &failingWriter{ok: 1 << 20}
	w, err := NewWith(fw, opusParams(), WithSyncOnFlush(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil || fw.syncs != 1 {
		t.Fatalf("Flush: %v, %d syncs", err, fw.syncs)
	}

	var buf bytes.Buffer
	bw := bufio.NewWriterSize(&buf, 1<<16)
	w, err = NewWith(bw, opusParams())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrame(media.Frame{Data: silence20}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if s := readOgg(t, buf.Bytes()); len(s.packets) != 3 || s.rest != 0 {
		t.Fatalf("Flush did not flush the bufio.Writer: %d packets", len(s.packets))
	}
}

func TestNewOwnsFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "track.ogg")
	w, err := New(path, opusParams(), WithSyncOnFlush(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(path, opusParams()); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second New on the same path: %v", err)
	}
	if err := w.WriteFrame(media.Frame{Data: silence20}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.f.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("file not closed: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm()&^0o644 != 0 {
		t.Fatalf("mode %v", info.Mode())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkStream(t, b, [][]byte{silence20})
	if _, err := New(filepath.Join(dir, "missing", "x.ogg"), opusParams()); err == nil {
		t.Fatal("New in a missing directory")
	}
}

func TestWriteFrameDoesNotAllocate(t *testing.T) {
	packets := fixturePackets(t, "sine440.ogg")
	w, err := NewWith(io.Discard, opusParams())
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	write := func() {
		if err := w.WriteFrame(media.Frame{Data: packets[i%len(packets)], PTS: time.Duration(i) * ms20}); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for range 1000 { // warm up: the page buffers reach their steady size
		write()
	}
	if n := testing.AllocsPerRun(5000, write); n != 0 {
		t.Fatalf("%v allocations per WriteFrame", n)
	}
	flush := func() {
		write()
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(1000, flush); n != 0 {
		t.Fatalf("%v allocations per WriteFrame and Flush", n)
	}
}

func BenchmarkWriteFrame(b *testing.B) {
	packets := fixturePackets(b, "sine440.ogg")
	for _, g := range []struct {
		name string
		gap  time.Duration // every 50th frame comes this much later
		opts []Option
	}{
		{"contiguous", 0, nil},
		{"gaps-silence", 200 * time.Millisecond, []Option{WithGapPolicy(GapSilence)}},
	} {
		b.Run(g.name, func(b *testing.B) {
			w, err := NewWith(io.Discard, opusParams(), g.opts...)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(packets[0])))
			pts := time.Duration(0)
			i := 0
			for b.Loop() {
				if i%50 == 49 {
					pts += g.gap
				}
				if err := w.WriteFrame(media.Frame{Data: packets[i%len(packets)], PTS: pts}); err != nil {
					b.Fatal(err)
				}
				pts += ms20
				i++
			}
		})
	}
}

func TestPacketDurationFixtures(t *testing.T) {
	for _, tt := range []struct {
		file string
		want time.Duration
	}{
		{"sine440.ogg", 20 * time.Millisecond},
		{"voip60ms.ogg", 60 * time.Millisecond},
	} {
		for i, p := range fixturePackets(t, tt.file) {
			if d, err := opus.Duration(p); err != nil || d != tt.want {
				t.Fatalf("%s packet %d (toc %#x): %v, %v; want %v", tt.file, i, p[0], d, err, tt.want)
			}
		}
	}
}

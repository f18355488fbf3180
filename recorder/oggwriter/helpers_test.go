package oggwriter

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// oggStream is an Ogg stream read with this package's page parser.
type oggStream struct {
	pages   []Page
	packets [][]byte
	// packetGranule is the granule position of the page each packet ends on, or -2 for
	// a packet that is not the last one to end on its page.
	packetGranule []int64
	rest          int // bytes after the last complete page
}

// readOgg parses b page by page and reassembles packets. It fails the test on a bad page
// or a page out of sequence; trailing bytes that are no complete page are counted in rest.
func readOgg(t testing.TB, b []byte) oggStream {
	t.Helper()
	var s oggStream
	var partial []byte
	inPacket := false
	for off := 0; off < len(b); {
		p, err := ParsePage(b[off:])
		if errors.Is(err, ErrShortPage) {
			s.rest = len(b) - off
			break
		}
		if err != nil {
			t.Fatalf("page at offset %d: %v", off, err)
		}
		if n := len(s.pages); n > 0 && p.seq != s.pages[n-1].seq+1 {
			t.Fatalf("page at offset %d has sequence %d after %d", off, p.seq, s.pages[n-1].seq)
		}
		if (p.flags&flagContinued != 0) != inPacket {
			t.Fatalf("page %d: continued flag %v but a packet continues: %v", p.seq, p.flags&flagContinued != 0, inPacket)
		}
		body := p.body
		ends := p.Packets()
		for _, l := range p.lacing {
			partial = append(partial, body[:l]...)
			body = body[l:]
			inPacket = l == 255
			if !inPacket {
				s.packets = append(s.packets, partial)
				ends--
				if ends == 0 {
					s.packetGranule = append(s.packetGranule, p.granule)
				} else {
					s.packetGranule = append(s.packetGranule, -2)
				}
				partial = nil
			}
		}
		if p.Packets() == 0 && p.granule != noGranule && len(p.lacing) > 0 {
			t.Fatalf("page %d: no packet ends on it but granule is %d", p.seq, p.granule)
		}
		s.pages = append(s.pages, p)
		off += p.Size()
	}
	return s
}

// endTrimmed reports whether the stream ends with the page Close writes when nothing is
// buffered: one 2.5 ms silence packet, trimmed away by a granule position that is the
// same as the one before.
func (s oggStream) endTrimmed() bool {
	n := len(s.pages)
	if n < 3 || len(s.packets) < 3 {
		return false
	}
	last := s.pages[n-1]
	prev := int64(0)
	for _, p := range s.pages[:n-1] {
		if p.granule != noGranule {
			prev = p.granule
		}
	}
	if n == 3 { // no audio: the granule position is the pre-skip
		_, preSkip, _ := ParseOpusHead(s.packets[0])
		prev = int64(preSkip)
	}
	return last.flags&flagEOS != 0 && len(last.lacing) == 1 && isSilence(last.body) &&
		last.flags&flagContinued == 0 && last.granule == prev
}

// isSilence reports whether p is a packet this package makes from silence frames.
func isSilence(p []byte) bool {
	for _, d := range []time.Duration{2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond, 80 * time.Millisecond, 100 * time.Millisecond, 120 * time.Millisecond} {
		if s, _ := opus.Silence(d); bytes.Equal(p, s) {
			return true
		}
	}
	return false
}

// audio returns the audio packets, without the trimmed end packet.
func (s oggStream) audio() [][]byte {
	a := s.packets[2:]
	if s.endTrimmed() {
		a = a[:len(a)-1]
	}
	return a
}

// fixturePackets returns the audio packets of a committed Ogg Opus fixture.
func fixturePackets(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := readOgg(t, b)
	if len(s.packets) < 3 {
		t.Fatalf("%s: only %d packets", name, len(s.packets))
	}
	return s.packets[2:]
}

// writeFrames writes packets one after the other from PTS start, skipping the packets
// for which skip returns true (a gap where they were), and returns the writer unclosed.
func writeFrames(t testing.TB, w *Writer, packets [][]byte, start time.Duration, skip func(i int) bool) time.Duration {
	t.Helper()
	pts := start
	for i, p := range packets {
		d, err := opus.Duration(p)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if skip == nil || !skip(i) {
			if err := w.WriteFrame(media.Frame{Data: p, PTS: pts, Keyframe: true}); err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
		}
		pts += d
	}
	return pts
}

func opusParams() media.TrackParams {
	return media.TrackParams{ClockRate: 48000, Channels: 2}
}

// needTool skips the test if a command is not installed.
func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed (apt-get install ffmpeg opus-tools oggz-tools): %v", name, err)
	}
}

// run runs a command and returns its stdout; it fails the test on an error, showing stderr.
func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	needTool(t, name)
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s%s", name, args, err, out, stderr.Bytes())
	}
	if stderr.Len() > 0 && name != "opusinfo" {
		t.Fatalf("%s %v wrote to stderr:\n%s", name, args, stderr.Bytes())
	}
	return out
}

// probe is what ffprobe says about a file.
type probe struct {
	Streams []struct {
		CodecName  string `json:"codec_name"`
		Channels   int    `json:"channels"`
		SampleRate string `json:"sample_rate"`
		StartTime  string `json:"start_time"`
		Duration   string `json:"duration"`
		Tags       map[string]string
	} `json:"streams"`
	Format struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
		StartTime  string `json:"start_time"`
	} `json:"format"`
}

func ffprobe(t testing.TB, path string) probe {
	t.Helper()
	out := run(t, "ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path)
	var p probe
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("ffprobe output: %v\n%s", err, out)
	}
	if len(p.Streams) != 1 {
		t.Fatalf("ffprobe found %d streams", len(p.Streams))
	}
	return p
}

// seconds parses a duration ffprobe printed.
func seconds(t testing.TB, s string) time.Duration {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return time.Duration(f * float64(time.Second))
}

// decodePCM decodes a file with ffmpeg to 48 kHz signed 16-bit stereo samples.
func decodePCM(t testing.TB, path string, extra ...string) []int16 {
	t.Helper()
	args := append([]string{"-v", "error", "-i", path}, extra...)
	args = append(args, "-f", "s16le", "-ar", "48000", "-ac", "2", "-")
	out := run(t, "ffmpeg", args...)
	pcm := make([]int16, len(out)/2)
	for i := range pcm {
		pcm[i] = int16(uint16(out[2*i]) | uint16(out[2*i+1])<<8)
	}
	return pcm
}

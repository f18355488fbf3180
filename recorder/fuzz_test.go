package recorder

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
)

// Fuzz input of FuzzPipeline: a codec selector, then records of
//
//	[delay, 2 bytes: time since the previous record in units of 100 µs]
//	[length, 2 bytes][length bytes of one packet as it comes off the network]
//
// A record of length 0 only moves time on. The corpus in testdata/fuzz/FuzzPipeline holds
// real streams (clean, lossy, restarted, hostile) in this form; TestFuzzSeedsCommitted
// checks it matches fuzzSeeds, and MATRIX_RECORDER_WRITE_FUZZ_SEEDS=1 rewrites it.

const fuzzTick = 100 * time.Microsecond

var fuzzCodecs = []TrackInfo{opusInfo(), vp8Info(), h264Info(),
	{UserID: "@alice:example.org", DeviceID: "DEV", MimeType: "video/VP9", ClockRate: 90000, PayloadType: 98},
	{UserID: "@alice:example.org", DeviceID: "DEV", MimeType: "video/AV1", ClockRate: 90000, PayloadType: 45},
}

func encodeFuzz(evs []event) []byte {
	var out []byte
	prev := int64(0)
	for _, ev := range evs {
		tick := int64(ev.at.Sub(base) / fuzzTick)
		d := max(tick-prev, 0)
		for ; d > 65535; d -= 65535 {
			out = binary.BigEndian.AppendUint16(out, 65535)
			out = binary.BigEndian.AppendUint16(out, 0)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(d))
		out = binary.BigEndian.AppendUint16(out, uint16(len(ev.data)))
		out = append(out, ev.data...)
		prev = max(prev, tick)
	}
	return out
}

func decodeFuzz(data []byte) []event {
	var evs []event
	at := base
	// Bounded so that one input runs in milliseconds: 3000 packets within a minute.
	for len(data) >= 4 && len(evs) < 3000 {
		at = at.Add(time.Duration(binary.BigEndian.Uint16(data)) * fuzzTick)
		if at.Sub(base) > time.Minute {
			break
		}
		n := int(binary.BigEndian.Uint16(data[2:]))
		data = data[4:]
		if n > len(data) {
			n = len(data)
		}
		if n > 0 {
			evs = append(evs, event{at: at, data: data[:n]})
		}
		data = data[n:]
	}
	return evs
}

type fuzzSeed struct {
	name  string
	codec uint8
	evs   []event
}

// fuzzSeeds builds the seed streams from the test media.
func fuzzSeeds(t testing.TB) []fuzzSeed {
	tone := loadFrames(t, testmedia.Tone440)
	vp8 := loadFrames(t, testmedia.VP8)
	h264 := loadFrames(t, testmedia.H264)
	var seeds []fuzzSeed
	add := func(name string, codec uint8, evs []event) {
		evs = newFakeSource(nil, evs).events
		seeds = append(seeds, fuzzSeed{name, codec, evs})
	}
	add("opus-clean", 0, opusStream().media(t, tone, base, 0, time.Second, nil))
	lossy, _, _, _ := impair(opusStream().media(t, tone, base, 0, 1500*time.Millisecond, nil), 9, 0.1, 0.05, 0.1, 40*time.Millisecond)
	add("opus-lossy", 0, lossy)
	dtx := opusStream().media(t, tone, base, 0, 2*time.Second, func(mt time.Duration) bool { return mt < 800*time.Millisecond || mt >= 1600*time.Millisecond })
	add("opus-pause", 0, dtx)
	restart := opusStream().media(t, tone, base, 0, 500*time.Millisecond, nil)
	b := opusStream()
	b.ssrc, b.seq, b.ts0 = 99, 7, 1<<31
	restart = append(restart, b.media(t, tone, base, 500*time.Millisecond, time.Second, nil)...)
	add("opus-restart", 0, restart)
	hostile := opusStream().media(t, tone, base, 0, 500*time.Millisecond, nil)
	var first rtp.Packet
	_ = first.Unmarshal(hostile[0].data)
	malformed, wrongPT, other := hostilePackets(rand.New(rand.NewPCG(1, 1)), first.Header)
	for i, raw := range append(append(malformed[:6], wrongPT...), other...) {
		hostile = append(hostile, event{at: base.Add(time.Duration(i*29) * time.Millisecond), data: raw})
	}
	add("opus-hostile", 0, hostile)
	vs := vp8Stream()
	vs.mtu = 400
	vlossy, _, _, _ := impair(vs.media(t, vp8, base, 0, 800*time.Millisecond, nil), 4, 0.03, 0.02, 0.05, 30*time.Millisecond)
	add("vp8-lossy", 1, vlossy)
	add("vp8-midgop", 1, vp8Stream().media(t, vp8, base, 800*time.Millisecond, 1200*time.Millisecond, nil))
	add("h264", 2, h264Stream().media(t, h264, base, 0, 500*time.Millisecond, nil))
	vp9 := &rtpStream{pt: 98, ssrc: 3, seq: 1, ts0: 1, rate: 90000, mtu: 600, pay: &codecs.VP9Payloader{InitialPictureIDFn: func() uint16 { return 1 }}}
	add("vp9", 3, vp9.media(t, loadFrames(t, testmedia.VP9), base, 0, 400*time.Millisecond, nil))
	av1 := &rtpStream{pt: 45, ssrc: 4, seq: 1, ts0: 1, rate: 90000, mtu: 600, pay: &codecs.AV1Payloader{}}
	add("av1", 4, av1.media(t, loadFrames(t, testmedia.AV1), base, 0, 400*time.Millisecond, nil))
	return seeds
}

func corpusFile(s fuzzSeed) string {
	return fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%q)\n", s.codec, encodeFuzz(s.evs))
}

// TestFuzzSeedsCommitted keeps the committed corpus in step with fuzzSeeds.
func TestFuzzSeedsCommitted(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzPipeline")
	write := os.Getenv("MATRIX_RECORDER_WRITE_FUZZ_SEEDS") == "1"
	for _, s := range fuzzSeeds(t) {
		path := filepath.Join(dir, s.name)
		if write {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(corpusFile(s)), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != corpusFile(s) {
			t.Errorf("%s is missing or stale (%v): run MATRIX_RECORDER_WRITE_FUZZ_SEEDS=1 go test -run TestFuzzSeedsCommitted ./recorder/", path, err)
		}
	}
}

// FuzzPipeline feeds arbitrary packets at arbitrary times to a track: it must never
// crash or hang, always finish its files, and write only files that tools can read:
// Ogg pages with valid checksums whose packets decode to exactly the granule timeline and
// that players open (the last granule position at least the pre-skip after the start),
// and Matroska files with Duration, Cues and a keyframe first.
func FuzzPipeline(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.codec, encodeFuzz(s.evs))
	}
	// Every input writes a call folder, and the recorder fsyncs its manifest and files:
	// on tmpfs that costs nothing, so prefer it when the machine has one.
	root := f.TempDir()
	if shm, err := os.MkdirTemp("/dev/shm", "fuzzpipeline"); err == nil {
		root = shm
		f.Cleanup(func() { _ = os.RemoveAll(shm) })
	}
	f.Fuzz(func(t *testing.T, codec uint8, data []byte) {
		info := fuzzCodecs[int(codec)%len(fuzzCodecs)]
		clock := newFakeClock()
		rec, err := New(Options{Dir: root, Now: clock.Now}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		sess, err := rec.Start(context.Background(), CallInfo{CallID: "fuzz", RoomID: "!r:x", Kind: "1:1"})
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(sess.Folder())
		tr, err := sess.AddTrack(info)
		if err != nil {
			t.Fatal(err)
		}
		evs := decodeFuzz(data)
		if err := tr.Run(context.Background(), newFakeSource(clock, evs)); err != nil {
			t.Fatalf("run: %v", err)
		}
		m, err := sess.Close(context.Background())
		if err != nil {
			t.Fatalf("close: %v", err)
		}
		var received, malformed uint64
		for _, e := range m.Tracks {
			received += e.Stats.PacketsReceived
			malformed += e.Stats.PacketsMalformed
			if e.Status != StatusComplete {
				t.Errorf("%s: status %s (%s)", e.File, e.Status, e.EndReason)
			}
			path := filepath.Join(sess.Folder(), e.File)
			if strings.HasSuffix(e.File, ".ogg") {
				of := readOggFile(t, path)
				if of.badPages != 0 || !of.eos || of.decoded()-of.timeline() > 3*time.Millisecond || of.timeline()-of.decoded() > 0 || !of.playable() {
					t.Errorf("%s: %d bad pages, eos %v, decodes to %v, granules %v, starts at granule %d and ends at %d with pre-skip %d",
						e.File, of.badPages, of.eos, of.decoded(), of.timeline(), of.pcmStart, of.granule, of.preSkip)
				}
				continue
			}
			w, blocks := readWebM(t, path)
			if len(blocks) == 0 || !blocks[0].key || w.Segment.Cues == nil || w.Segment.Info.Duration <= 0 {
				t.Errorf("%s: %d blocks, cues %v, duration %v", e.File, len(blocks), w.Segment.Cues != nil, w.Segment.Info.Duration)
			}
			for i := 1; i < len(blocks); i++ {
				if blocks[i].pts < blocks[i-1].pts {
					t.Errorf("%s: block %d at %v after %v", e.File, i, blocks[i].pts, blocks[i-1].pts)
				}
			}
		}
		if len(m.Tracks) > 0 && received+malformed != uint64(len(evs)) {
			t.Errorf("%d packets in, %d received + %d malformed counted", len(evs), received, malformed)
		}
	})
}

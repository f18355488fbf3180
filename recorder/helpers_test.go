package recorder

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder/codec/opus"
)

// The track pipeline is tested in simulated time: a fake clock (Options.Now) that the fake
// packet source moves to each packet's arrival time, and to the read deadline when no packet
// arrives before it. Nothing sleeps; a minute of call runs in milliseconds.

// base is the wall-clock time at which every simulated call starts.
var base = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: base} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// set moves the clock to t. Tracks of one simulated call run one after the other, each
// from its own first arrival, so the clock may go back between them.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// event is one thing the fake source delivers at a time: a packet, a read error, or a call
// to fn (to look at the files as a crash at that moment would leave them).
type event struct {
	at   time.Time
	data []byte
	err  error
	fn   func()
}

type timeoutError struct{}

func (timeoutError) Error() string { return "i/o timeout" }
func (timeoutError) Timeout() bool { return true }

// fakeSource is a TrackSource over a list of events in arrival order. It moves the fake
// clock and returns io.EOF after the last event; onKeyframe, when set, hears of key frame
// requests.
type fakeSource struct {
	SenderReportRelay
	clock      *fakeClock
	onKeyframe func()

	mu       sync.Mutex
	events   []event
	deadline time.Time
	reads    int

	lastTimeout time.Time
	spins       int
}

func newFakeSource(clock *fakeClock, events []event) *fakeSource {
	sort.SliceStable(events, func(i, j int) bool { return events[i].at.Before(events[j].at) })
	return &fakeSource{clock: clock, events: events}
}

func (s *fakeSource) RequestKeyframe() {
	if s.onKeyframe != nil {
		s.onKeyframe()
	}
}

func (s *fakeSource) ReleaseHeld() bool { return false }

func (s *fakeSource) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	return nil
}

func (s *fakeSource) ReadPacket(b []byte) (int, error) {
	s.mu.Lock()
	s.reads++
	if len(s.events) == 0 {
		s.mu.Unlock()
		return 0, io.EOF
	}
	ev := s.events[0]
	if !s.deadline.IsZero() && ev.at.After(s.deadline) {
		d := s.deadline
		// A read loop that keeps asking for deadlines that have passed would spin for ever
		// in simulated time (and burn a core in real time).
		if d.After(s.lastTimeout) {
			s.spins = 0
		} else if s.spins++; s.spins > 10000 {
			s.mu.Unlock()
			panic(fmt.Sprintf("busy loop: %d reads with a deadline (%v) that has passed", s.spins, d))
		}
		s.lastTimeout = d
		s.mu.Unlock()
		s.clock.set(d)
		return 0, timeoutError{}
	}
	s.spins = 0
	s.events = s.events[1:]
	s.mu.Unlock()
	s.clock.set(ev.at)
	switch {
	case ev.fn != nil:
		ev.fn()
		return 0, timeoutError{}
	case ev.err != nil:
		return 0, ev.err
	}
	return copy(b, ev.data), nil
}

// rtpStream packetizes frames of one RTP stream.
type rtpStream struct {
	pt   uint8
	ssrc uint32
	seq  uint16
	ts0  uint32
	rate uint32
	mtu  uint16
	pay  rtp.Payloader
}

func opusStream() *rtpStream {
	return &rtpStream{pt: 111, ssrc: 0x1234, seq: 65500, ts0: 0xfffe0000, rate: 48000, mtu: 1200, pay: &codecs.OpusPayloader{}}
}

func vp8Stream() *rtpStream {
	return &rtpStream{pt: 96, ssrc: 0x5678, seq: 65000, ts0: 0xfff00000, rate: 90000, mtu: 1200, pay: &codecs.VP8Payloader{EnablePictureID: true}}
}

func h264Stream() *rtpStream {
	return &rtpStream{pt: 102, ssrc: 0x9abc, seq: 100, ts0: 1000, rate: 90000, mtu: 1200, pay: &codecs.H264Payloader{}}
}

// packets returns the marshalled packets of one frame at media time mt.
func (s *rtpStream) packets(t testing.TB, mt time.Duration, data []byte) [][]byte {
	t.Helper()
	ts := s.ts0 + uint32(int64(mt)*int64(s.rate)/int64(time.Second))
	payloads := s.pay.Payload(s.mtu, data)
	out := make([][]byte, 0, len(payloads))
	for i, p := range payloads {
		pkt := rtp.Packet{Header: rtp.Header{
			Version: 2, PayloadType: s.pt, SequenceNumber: s.seq, Timestamp: ts, SSRC: s.ssrc,
			Marker: i == len(payloads)-1,
		}, Payload: p}
		s.seq++
		raw, err := pkt.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// media sends frames (looped) for media time [from, to) of the stream, each frame arriving
// at start+its media time. send decides per frame: true sends it, false leaves a hole in
// the timeline (the timestamps go on, as a sender in DTX or mute does). The sequence
// numbers of unsent frames are not used, so holes are not losses.
func (s *rtpStream) media(t testing.TB, frames []testmedia.Frame, start time.Time, from, to time.Duration, send func(mt time.Duration) bool) []event {
	t.Helper()
	var out []event
	mt := time.Duration(0)
	for i := 0; mt < to; i++ {
		f := frames[i%len(frames)]
		if mt >= from && (send == nil || send(mt)) {
			for _, raw := range s.packets(t, mt, f.Data) {
				out = append(out, event{at: start.Add(mt), data: raw})
			}
		}
		mt += f.Duration
	}
	return out
}

// frameTimes returns the media times of the frames media would send in [from, to).
func frameTimes(frames []testmedia.Frame, from, to time.Duration) []time.Duration {
	var out []time.Duration
	mt := time.Duration(0)
	for i := 0; mt < to; i++ {
		if mt >= from {
			out = append(out, mt)
		}
		mt += frames[i%len(frames)].Duration
	}
	return out
}

func loadFrames(t testing.TB, name string) []testmedia.Frame {
	t.Helper()
	f, err := testmedia.Frames(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// impair applies network trouble to packet events with a fixed seed: loss and duplication
// probabilities, and a share of packets delayed by delay. It returns the events and how
// many packets it lost, duplicated and delayed.
func impair(evs []event, seed uint64, loss, dup, reorderShare float64, delay time.Duration) (out []event, lost, duped, delayed int) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i, ev := range evs {
		if ev.data == nil || i == 0 {
			out = append(out, ev)
			continue
		}
		switch x := r.Float64(); {
		case x < loss:
			lost++
			continue
		case x < loss+dup:
			duped++
			out = append(out, ev, event{at: ev.at.Add(3 * time.Millisecond), data: ev.data})
			continue
		case x < loss+dup+reorderShare:
			delayed++
			ev.at = ev.at.Add(delay)
		}
		out = append(out, ev)
	}
	return out, lost, duped, delayed
}

// harness records one call in simulated time.
type harness struct {
	t     testing.TB
	clock *fakeClock
	rec   *Recorder
	sess  *Session
	pli   int
}

func newHarness(t testing.TB, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock()}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	opts.Now = h.clock.Now
	rec, err := New(opts, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	h.rec = rec
	sess, err := rec.Start(context.Background(), CallInfo{CallID: "call1", RoomID: "!room:example.org", Kind: "1:1"})
	if err != nil {
		t.Fatal(err)
	}
	h.sess = sess
	return h
}

func opusInfo() TrackInfo {
	return TrackInfo{UserID: "@alice:example.org", DeviceID: "DEV", MimeType: "audio/opus", ClockRate: 48000, Channels: 2, PayloadType: 111, ClockDomain: "alice"}
}

func vp8Info() TrackInfo {
	return TrackInfo{UserID: "@alice:example.org", DeviceID: "DEV", MimeType: "video/VP8", ClockRate: 90000, PayloadType: 96, ClockDomain: "alice"}
}

func h264Info() TrackInfo {
	return TrackInfo{UserID: "@alice:example.org", DeviceID: "DEV", MimeType: "video/H264", ClockRate: 90000, PayloadType: 102, ClockDomain: "alice"}
}

// run records one track from events until they end.
func (h *harness) run(info TrackInfo, evs []event) *Track {
	h.t.Helper()
	tr := h.add(info)
	h.runOn(tr, evs)
	return tr
}

func (h *harness) add(info TrackInfo) *Track {
	h.t.Helper()
	tr, err := h.sess.AddTrack(info)
	if err != nil {
		h.t.Fatal(err)
	}
	return tr
}

func (h *harness) runOn(tr *Track, evs []event) {
	h.t.Helper()
	src := newFakeSource(h.clock, evs)
	if len(src.events) > 0 {
		// The track starts when its first packet arrives, as a real one does.
		h.clock.set(src.events[0].at)
	}
	src.onKeyframe = func() { h.pli++ }
	if err := tr.Run(context.Background(), src); err != nil {
		h.t.Fatalf("run: %v", err)
	}
}

// toNTP converts a time to the RTCP NTP format.
func toNTP(t time.Time) uint64 {
	secs := uint64(t.Unix() + 2208988800)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

func (h *harness) close() Manifest {
	h.t.Helper()
	m, err := h.sess.Close(context.Background())
	if err != nil {
		h.t.Fatalf("close: %v", err)
	}
	return m
}

func (h *harness) path(file string) string { return filepath.Join(h.sess.Folder(), file) }

func filesOf(m Manifest, track string) []FileEntry {
	var out []FileEntry
	for _, e := range m.Tracks {
		if track == "" || e.Track == track {
			out = append(out, e)
		}
	}
	return out
}

func near(got, want, tol time.Duration) bool { return got >= want-tol && got <= want+tol }

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// oggFile is an Ogg Opus file read page by page with a reader of the test's own.
type oggFile struct {
	preSkip  int
	packets  [][]byte // audio packets, OpusHead and OpusTags excluded
	granule  int64    // granule position of the last page
	eos      bool
	pages    int
	badPages int // pages whose checksum or structure is wrong
	// pcmStart is where players take the stream to start (RFC 7845 §4.2, as opusfile
	// reads it): the granule position of the first page on which audio packets end minus
	// their duration, or 0 when that page also ends the stream and holds more audio than
	// its granule position says (end trimming). haveStart: there is such a page.
	pcmStart  int64
	haveStart bool
}

func readOggFile(t testing.TB, path string) oggFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseOgg(b)
}

// parseOgg reads complete pages from b and stops at the first torn or broken one.
func parseOgg(b []byte) oggFile {
	var f oggFile
	var pkt []byte
	n := 0
	for len(b) >= 27 {
		if !bytes.Equal(b[:4], []byte("OggS")) {
			f.badPages++
			break
		}
		nseg := int(b[26])
		if len(b) < 27+nseg {
			break
		}
		lacing := b[27 : 27+nseg]
		size := 0
		for _, l := range lacing {
			size += int(l)
		}
		if len(b) < 27+nseg+size {
			break
		}
		page := b[:27+nseg+size]
		crc := binary.LittleEndian.Uint32(page[22:26])
		chk := append([]byte(nil), page...)
		copy(chk[22:26], []byte{0, 0, 0, 0})
		if oggCRC(chk) != crc {
			f.badPages++
			break
		}
		f.pages++
		f.granule = int64(binary.LittleEndian.Uint64(page[6:14]))
		f.eos = page[5]&4 != 0
		body := page[27+nseg:]
		var samples int64
		for _, l := range lacing {
			pkt = append(pkt, body[:l]...)
			body = body[l:]
			if l < 255 {
				switch n {
				case 0:
					if len(pkt) >= 12 {
						f.preSkip = int(binary.LittleEndian.Uint16(pkt[10:12]))
					}
				case 1:
				default:
					f.packets = append(f.packets, pkt)
					if d, err := opus.Duration(pkt); err == nil {
						samples += int64(d * 48000 / time.Second)
					}
				}
				n++
				pkt = nil
			}
		}
		if !f.haveStart && samples > 0 {
			f.pcmStart, f.haveStart = max(f.granule-samples, 0), true
			if f.eos && f.granule < samples {
				f.pcmStart = 0
			}
		}
		b = b[len(page):]
	}
	return f
}

// oggCRC is the Ogg page checksum (CRC-32, polynomial 0x04c11db7, no reflection).
func oggCRC(b []byte) uint32 {
	var crc uint32
	for _, c := range b {
		crc ^= uint32(c) << 24
		for range 8 {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04c11db7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// decoded is the media time the packets cover when decoded one after the other (what
// ffmpeg, opusdec and editors do): a gap that is only a jump in granule positions is
// missing from it. Players drop the pre-skip from its start, as from the timeline's.
func (f oggFile) decoded() time.Duration {
	var d time.Duration
	for _, p := range f.packets {
		pd, err := opus.Duration(p)
		if err == nil {
			d += pd
		}
	}
	return d
}

// playable reports whether players open the stream: opusfile refuses one whose last
// granule position lies less than the pre-skip after its start (OP_EBADTIMESTAMP).
func (f oggFile) playable() bool {
	return !f.haveStart || f.granule-f.pcmStart >= int64(f.preSkip)
}

// timeline is the duration the granule positions give.
func (f oggFile) timeline() time.Duration {
	return time.Duration(f.granule-int64(f.preSkip)) * time.Second / 48000
}

// webmFile is a finished WebM/Matroska file read with ebml-go.
type webmFile struct {
	Header  webm.EBMLHeader `ebml:"EBML"`
	Segment webm.Segment    `ebml:"Segment"`
}

type webmBlock struct {
	pts time.Duration
	key bool
	n   int
}

func readWebM(t testing.TB, path string) (webmFile, []webmBlock) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w webmFile
	if err := ebml.Unmarshal(f, &w); err != nil {
		t.Fatalf("parse %s: %v", filepath.Base(path), err)
	}
	var blocks []webmBlock
	for _, c := range w.Segment.Cluster {
		for _, b := range c.SimpleBlock {
			pts := time.Duration(int64(c.Timecode)+int64(b.Timecode)) * time.Millisecond
			n := 0
			for _, d := range b.Data {
				n += len(d)
			}
			blocks = append(blocks, webmBlock{pts: pts, key: b.Keyframe, n: n})
		}
	}
	return w, blocks
}

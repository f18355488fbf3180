package livekit

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/call/livekit/framecrypt"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// liveReader plays timed packets as a live track does, on a fake clock: a read returns the
// next packet at its arrival time, or a timeout at the read deadline when the packet comes
// later; actions (a key arriving) run when the clock passes their time. After the last
// packet the track ends.
type liveReader struct {
	now      time.Time
	deadline time.Time
	pkts     []timed
	actions  []timedAction
}

type timed struct {
	at   time.Time
	data []byte
}

type timedAction struct {
	at time.Time
	fn func()
}

func (r *liveReader) clock() time.Time { return r.now }

func (r *liveReader) SetReadDeadline(t time.Time) error { r.deadline = t; return nil }

func (r *liveReader) advance(to time.Time) {
	if to.After(r.now) {
		r.now = to
	}
	for len(r.actions) > 0 && !r.actions[0].at.After(r.now) {
		r.actions[0].fn()
		r.actions = r.actions[1:]
	}
}

func (r *liveReader) ReadRTPBytes(b []byte) (int, error) {
	if len(r.pkts) == 0 {
		return 0, io.EOF
	}
	next := r.pkts[0]
	if !r.deadline.IsZero() && next.at.After(r.deadline) {
		r.advance(r.deadline)
		return 0, timeoutErr{}
	}
	r.advance(next.at)
	r.pkts = r.pkts[1:]
	return copy(b, next.data), nil
}

// rotationStream encrypts a participant's frames as livekit-client does and packetizes
// them: key index 0 until switchAt, index 1 from then on. Frames are sent every interval
// from t0, their packets 1 ms apart.
func rotationStream(t *testing.T, codec media.Codec, frames []testmedia.Frame, clockRate uint32, t0, switchAt time.Time, key0, key1 []byte) []timed {
	t.Helper()
	enc, err := framecrypt.NewEncryptor(codec, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetKey(0, key0); err != nil {
		t.Fatal(err)
	}
	var vp8 codecs.VP8Payloader
	var out []timed
	var seq uint16
	at, ts := t0, uint32(1000)
	for _, f := range frames {
		if !at.Before(switchAt) && enc.KeyIndex() == 0 {
			if err := enc.SetKey(1, key1); err != nil {
				t.Fatal(err)
			}
		}
		data, err := enc.Encrypt(nil, f.Data, f.Keyframe, ts)
		if err != nil {
			t.Fatal(err)
		}
		payloads := [][]byte{data}
		if codec == media.CodecVP8 {
			payloads = vp8.Payload(1000, data)
		}
		for i, p := range payloads {
			pkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 1,
				Marker: i == len(payloads)-1}, Payload: p}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, timed{at: at.Add(time.Duration(i) * time.Millisecond), data: pkt})
			seq++
		}
		at = at.Add(f.Duration)
		ts += uint32(f.Duration * time.Duration(clockRate) / time.Second)
	}
	return out
}

// retransmitted delays the last packet of the frames numbered in frames behind the first
// packet of the next frame, as a packet the SFU retransmits after a NACK arrives.
func retransmitted(pkts []timed, frames ...int) []timed {
	out := append([]timed(nil), pkts...)
	frame := 0
	for i := 0; i+1 < len(out); i++ {
		var h rtp.Header
		if _, err := h.Unmarshal(out[i].data); err != nil || !h.Marker {
			continue
		}
		if slices.Contains(frames, frame) {
			out[i].data, out[i+1].data = out[i+1].data, out[i].data
			i++
		}
		frame++
	}
	return out
}

// After a key rotation whose new key arrives after the first frames that use it (the
// sender switches to it a second after sending it; the bot got it late), video frames wait
// for it as audio's do: nothing of either track is undecryptable or dropped, and video asks
// for no key frame beyond the first; also when a packet of a frame comes again after a
// NACK, behind the next frame's first packet, while frames wait for the key or after. (Seen
// with the real SDK: video lagged audio by 0.8 s, 6 undecryptable and 12 dropped frames, 2
// key-frame requests, while audio, whose packets are whole frames, lost nothing.)
func TestRotationKeyLateVideoHeldLikeAudio(t *testing.T) {
	key0, key1 := []byte("key zero 16bytes"), []byte("key one! 16bytes")
	for _, tc := range []struct {
		name  string
		asset string
		codec media.Codec
		mime  string
		rate  uint32
		loops int
		// retransmit: frames whose last packet comes late (frame 30 is the first under
		// the new key, 30-35 wait for it).
		retransmit []int
	}{
		{name: "audio", asset: testmedia.Tone440, codec: media.CodecOpus, mime: webrtc.MimeTypeOpus, rate: 48000, loops: 1},
		{name: "video", asset: testmedia.VP8, codec: media.CodecVP8, mime: webrtc.MimeTypeVP8, rate: 90000, loops: 2},
		{name: "video, retransmission while waiting", asset: testmedia.VP8, codec: media.CodecVP8, mime: webrtc.MimeTypeVP8, rate: 90000, loops: 2, retransmit: []int{31}},
		{name: "video, retransmissions around the switch", asset: testmedia.VP8, codec: media.CodecVP8, mime: webrtc.MimeTypeVP8, rate: 90000, loops: 2, retransmit: []int{28, 29, 30, 36, 40}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			one, err := testmedia.Frames(tc.asset)
			if err != nil {
				t.Fatal(err)
			}
			var frames []testmedia.Frame
			for range tc.loops {
				frames = append(frames, one...)
			}
			t0 := time.Unix(1_800_000_000, 0)
			switchAt := t0.Add(2 * time.Second)
			r := &liveReader{now: t0, pkts: retransmitted(rotationStream(t, tc.codec, frames, tc.rate, t0, switchAt, key0, key1), tc.retransmit...)}
			ring := framecrypt.NewKeyring()
			if err := ring.SetKey(0, key0); err != nil {
				t.Fatal(err)
			}
			// The new key reaches the bot 400 ms after the sender started to use it: six
			// video frames, twenty audio frames under it come first.
			r.actions = []timedAction{{at: switchAt.Add(400 * time.Millisecond), fn: func() { _ = ring.SetKey(1, key1) }}}

			rec, err := recorder.New(recorder.Options{Dir: t.TempDir(), Now: r.clock}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			sess, err := rec.Start(context.Background(), recorder.CallInfo{CallID: "c", RoomID: "!r:hs", Kind: "livekit"})
			if err != nil {
				t.Fatal(err)
			}
			log := testLogger(t)
			undecryptable, keyframes := 0, 0
			src, dec, err := newTrackSource(r, 1, specOf(tc.codec), trackOptions{
				ring: ring, wait: 4 * time.Second, log: log,
				pli: func() { keyframes++ }, undecryptable: func() { undecryptable++ },
			})
			if err != nil {
				t.Fatal(err)
			}
			src.packetStage.(*keyedSource).now = r.clock
			info := recorder.TrackInfo{UserID: "@alice:hs", DeviceID: "A", Source: recorder.SourceCamera, MimeType: tc.mime, ClockRate: tc.rate,
				PayloadType: 96, SSRC: 1}
			if tc.codec == media.CodecOpus {
				info.Source, info.Channels = recorder.SourceMicrophone, 2
			}
			tr, err := sess.AddTrack(info)
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.Run(context.Background(), src, recorder.WithDecrypter(dec)); err != nil {
				t.Fatal(err)
			}
			m, err := sess.Close(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Tracks) != 1 {
				t.Fatalf("files: %+v", m.Tracks)
			}
			st := m.Tracks[0].Stats
			if st.FramesUndecrypted != 0 || undecryptable != 0 || st.FramesDropped != 0 || st.Frames != uint64(len(frames)) {
				t.Errorf("%d of %d frames written, %d undecryptable, %d dropped", st.Frames, len(frames), st.FramesUndecrypted, st.FramesDropped)
			}
			if tc.codec != media.CodecOpus && (st.KeyframeRequests > 1 || keyframes > 1) {
				t.Errorf("%d key frame requests (%d sent): video had to start over after the rotation", st.KeyframeRequests, keyframes)
			}
		})
	}
}

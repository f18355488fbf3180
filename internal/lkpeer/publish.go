package lkpeer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/matrix-recorder/matrix-recorder/call/livekit/framecrypt"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	rcodec "github.com/matrix-recorder/matrix-recorder/recorder/codec"
	rmedia "github.com/matrix-recorder/matrix-recorder/recorder/media"
)

// Track is one published track, sending a test asset in a loop in real time.
type Track struct {
	p      *Peer
	pub    *lksdk.LocalTrackPublication
	sender *testmedia.Sender
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// Sender controls pauses (mute, DTX) of the track's media.
func (t *Track) Sender() *testmedia.Sender { return t.sender }

// SID is the LiveKit track id.
func (t *Track) SID() string { return t.pub.SID() }

// Stop ends sending and unpublishes the track.
func (t *Track) Stop() error {
	t.once.Do(func() {
		t.cancel()
		t.err = <-t.done
		t.p.mu.Lock()
		room := t.p.lkRoom
		t.p.mu.Unlock()
		if room != nil {
			if err := room.LocalParticipant.UnpublishTrack(t.pub.SID()); err != nil {
				t.err = errors.Join(t.err, err)
			}
		}
	})
	return t.err
}

// media is what publishing asset takes: the asset, its frames and the LiveKit room.
func (p *Peer) media(asset string) (testmedia.Asset, []testmedia.Frame, *lksdk.Room, error) {
	a, err := testmedia.Lookup(asset)
	if err != nil {
		return testmedia.Asset{}, nil, nil, err
	}
	frames, err := testmedia.Frames(asset)
	if err != nil {
		return testmedia.Asset{}, nil, nil, err
	}
	p.mu.Lock()
	room := p.lkRoom
	p.mu.Unlock()
	if room == nil {
		return testmedia.Asset{}, nil, nil, errors.New("not joined")
	}
	return a, frames, room, nil
}

// Publish sends asset (a testmedia name) as a track of the given source, encrypted when
// the peer encrypts.
func (p *Peer) Publish(ctx context.Context, asset string, source livekit.TrackSource) (*Track, error) {
	a, frames, room, err := p.media(asset)
	if err != nil {
		return nil, err
	}
	var trackOpts []func(*webrtc.TrackLocalStaticRTP)
	var vp9p *vp9Payloader
	if p.opts.Encrypt && a.MimeType == webrtc.MimeTypeVP9 {
		vp9p = newVP9Payloader()
		trackOpts = append(trackOpts, webrtc.WithPayloader(func(webrtc.RTPCodecCapability) (rtp.Payloader, error) { return vp9p, nil }))
	}
	local, err := webrtc.NewTrackLocalStaticSample(a.Capability(), source.String(), "lkpeer-"+source.String(), trackOpts...)
	if err != nil {
		return nil, err
	}
	opts := &lksdk.TrackPublicationOptions{Name: source.String(), Source: source}
	if a.Video {
		opts.VideoWidth, opts.VideoHeight = a.Width, a.Height
	}
	var w testmedia.SampleWriter = local
	if p.opts.Encrypt {
		opts.Encryption = livekit.Encryption_GCM
		codec := codecOf(a.MimeType)
		enc, err := framecrypt.NewEncryptor(codec, rand.Uint32())
		if err != nil {
			return nil, err
		}
		w = &encWriter{p: p, out: local, enc: enc, codec: codec, clock: a.ClockRate, ts: rand.Uint32(), index: -1, vp9: vp9p}
	}
	pub, err := room.LocalParticipant.PublishTrack(local, opts)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", source, err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := &Track{p: p, pub: pub, sender: testmedia.NewSender(w, frames), cancel: cancel, done: make(chan error, 1)}
	go func() { t.done <- t.sender.Run(sctx) }()
	p.mu.Lock()
	p.tracks = append(p.tracks, t)
	p.mu.Unlock()
	p.log.Info().Str("source", source.String()).Str("asset", asset).Bool("encrypted", p.opts.Encrypt).Msg("Publishing")
	return t, nil
}

// encWriter encrypts each frame as LiveKit's client SDK does before the packetizer.
type encWriter struct {
	p     *Peer
	out   testmedia.SampleWriter
	enc   *framecrypt.Encryptor
	codec rmedia.Codec
	clock uint32
	ts    uint32
	index int
	buf   []byte
	// vp9 describes each plaintext VP9 frame to the packetizer (nil for other codecs).
	vp9 *vp9Payloader
}

func (w *encWriter) WriteSample(s media.Sample) error {
	ts := w.ts
	w.ts += uint32(s.Duration.Seconds() * float64(w.clock))
	if len(s.Data) == 0 {
		return w.out.WriteSample(s)
	}
	w.p.mu.Lock()
	idx, key := w.p.sendIndex, w.p.sendKey
	w.p.mu.Unlock()
	if int(idx) != w.index {
		if err := w.enc.SetKey(idx, key); err != nil {
			return err
		}
		w.index = int(idx)
	}
	data := s.Data
	keyframe := false
	if w.codec == rmedia.CodecH264 {
		// Browsers hand the encryptor Annex B with 4-byte start codes and no access unit
		// delimiters; receivers rebuild exactly that, and the clear header is authenticated.
		data, keyframe = normalizeH264(data)
	}
	if w.vp9 != nil {
		if err := w.vp9.describe(data); err != nil {
			return err
		}
	}
	out, err := w.enc.Encrypt(w.buf[:0], data, keyframe, ts)
	if err != nil {
		return err
	}
	w.buf = out
	return w.out.WriteSample(media.Sample{Data: bytes.Clone(out), Duration: s.Duration})
}

// Simulcast is a video track published in two simulcast layers (low "q" and high "f"),
// each sending the asset, so a test can stop a layer and make the SFU switch.
type Simulcast struct {
	p      *Peer
	pub    *lksdk.LocalTrackPublication
	low    *testmedia.Sender
	high   *testmedia.Sender
	cancel context.CancelFunc
	done   chan error
}

// High and Low are the senders of the two layers (Pause one to make the SFU switch).
func (s *Simulcast) High() *testmedia.Sender { return s.high }
func (s *Simulcast) Low() *testmedia.Sender  { return s.low }

// Stop ends sending and unpublishes the track.
func (s *Simulcast) Stop() error {
	s.cancel()
	err := errors.Join(<-s.done, <-s.done)
	s.p.mu.Lock()
	room := s.p.lkRoom
	s.p.mu.Unlock()
	if room != nil {
		err = errors.Join(err, room.LocalParticipant.UnpublishTrack(s.pub.SID()))
	}
	return err
}

// lkOut adapts server-sdk-go's LocalTrack to the testmedia sender.
type lkOut struct{ t *lksdk.LocalTrack }

func (o lkOut) WriteSample(s media.Sample) error { return o.t.WriteSample(s, nil) }

// PublishSimulcast publishes a video asset in two simulcast layers, as browsers publish
// cameras (Element Call turns simulcast on), encrypted per layer when the peer encrypts.
func (p *Peer) PublishSimulcast(ctx context.Context, asset string, source livekit.TrackSource) (*Simulcast, error) {
	a, frames, room, err := p.media(asset)
	if err != nil {
		return nil, err
	}
	if !a.Video {
		return nil, errors.New("simulcast needs a video asset")
	}
	id := "lkpeer-sim-" + randomID()
	var tracks []*lksdk.LocalTrack
	var writers []testmedia.SampleWriter
	for _, layer := range []*livekit.VideoLayer{
		{Quality: livekit.VideoQuality_LOW, Width: uint32(a.Width / 2), Height: uint32(a.Height / 2)},
		{Quality: livekit.VideoQuality_HIGH, Width: uint32(a.Width), Height: uint32(a.Height)},
	} {
		lt, err := lksdk.NewLocalTrack(a.Capability(), lksdk.WithSimulcast(id, layer))
		if err != nil {
			return nil, err
		}
		tracks = append(tracks, lt)
		var w testmedia.SampleWriter = lkOut{lt}
		if p.opts.Encrypt {
			codec := codecOf(a.MimeType)
			enc, err := framecrypt.NewEncryptor(codec, rand.Uint32())
			if err != nil {
				return nil, err
			}
			w = &encWriter{p: p, out: w, enc: enc, codec: codec, clock: a.ClockRate, ts: rand.Uint32(), index: -1}
		}
		writers = append(writers, w)
	}
	opts := &lksdk.TrackPublicationOptions{Name: source.String(), Source: source, VideoWidth: a.Width, VideoHeight: a.Height}
	if p.opts.Encrypt {
		opts.Encryption = livekit.Encryption_GCM
	}
	pub, err := room.LocalParticipant.PublishSimulcastTrack(tracks, opts)
	if err != nil {
		return nil, fmt.Errorf("publish simulcast %s: %w", source, err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Simulcast{p: p, pub: pub, low: testmedia.NewSender(writers[0], frames), high: testmedia.NewSender(writers[1], frames), cancel: cancel, done: make(chan error, 2)}
	go func() { s.done <- s.low.Run(sctx) }()
	go func() { s.done <- s.high.Run(sctx) }()
	p.log.Info().Str("source", source.String()).Str("asset", asset).Bool("encrypted", p.opts.Encrypt).Msg("Publishing in simulcast")
	return s, nil
}

// normalizeH264 rewrites an Annex B access unit with 4-byte start codes and without access
// unit delimiters or filler data (which pion's packetizer drops), and reports an IDR.
func normalizeH264(au []byte) ([]byte, bool) {
	var out []byte
	idr := false
	for _, nal := range splitAnnexB(au) {
		if len(nal) == 0 {
			continue
		}
		switch nal[0] & 0x1f {
		case 9, 12:
			continue
		case 5:
			idr = true
		}
		out = append(out, 0, 0, 0, 1)
		out = append(out, nal...)
	}
	return out, idr
}

func splitAnnexB(b []byte) [][]byte {
	var nals [][]byte
	start := -1
	for i := 0; i+2 < len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				end := i
				for end > start && b[end-1] == 0 {
					end--
				}
				nals = append(nals, b[start:end])
			}
			start = i + 3
			i += 2
		}
	}
	if start >= 0 && start <= len(b) {
		nals = append(nals, b[start:])
	}
	return nals
}

func postJSON(ctx context.Context, url string, in, out any) error {
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	return json.Unmarshal(body, out)
}

// codecOf names the codec of a MIME type as the recorder's codec table does.
func codecOf(mime string) rmedia.Codec {
	if s, ok := rcodec.ByMimeType(mime); ok {
		return s.ID
	}
	return rmedia.CodecUnknown
}

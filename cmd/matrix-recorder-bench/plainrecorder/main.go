// Command plainrecorder is the bench's baseline: a deliberately plain pion recorder that
// answers Matrix 1:1 calls (MSC2746, unencrypted rooms) and records them the way pion's
// examples do. webrtc.NewAPI with the default codecs and RegisterDefaultInterceptors (NACK,
// RTCP reports, stats, TWCC); OnTrack starts one goroutine per track that calls ReadRTP in a
// loop; Opus goes to pion's oggwriter (with a gap filler: a silence frame for every 20 ms the
// RTP timestamps jump ahead, so the file is as long as the call), VP8 to pion's ivfwriter.
// No jitter buffer, no keyframe requests, no manifest, no crash safety: the floor a
// recorder built from pion's parts stands on.
//
// It is not part of the product. cmd/matrix-recorder-bench builds and starts it next to the
// bot, with the same Dendrite and the same callers. It prints "ready" after its first sync,
// then one "final {json}" line per call once that call's files are closed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "plainrecorder:", err)
		os.Exit(1)
	}
}

// Final is what the recorder prints when a call's files are closed.
type Final struct {
	CallID string      `json:"call_id"`
	Tracks []TrackStat `json:"tracks"`
}

// TrackStat is one file of a call.
type TrackStat struct {
	File     string `json:"file"`
	Kind     string `json:"kind"`
	Packets  uint64 `json:"packets"`
	Lost     uint64 `json:"lost"`
	Silences uint64 `json:"silences,omitempty"`
}

type recorder struct {
	cli *mautrix.Client
	api *webrtc.API
	dir string
	out *lockedWriter

	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	id, room string
	mu       sync.Mutex
	pc       *webrtc.PeerConnection
	pending  []webrtc.ICECandidateInit
	ended    bool
	tracks   sync.WaitGroup
	stats    []TrackStat
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plainrecorder", flag.ContinueOnError)
	hs := fs.String("homeserver", "", "homeserver URL")
	user := fs.String("user", "", "user id")
	device := fs.String("device", "", "device id")
	dir := fs.String("dir", "", "where the call folders go")
	pprofAddr := fs.String("pprof", "", "serve Go's profiler on this address (for the bench's -profile)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			return err
		}
		go func() { _ = http.Serve(ln, nil) }() // net/http/pprof's routes on the default mux
	}
	token := os.Getenv("PLAINRECORDER_ACCESS_TOKEN")
	if *hs == "" || *user == "" || token == "" || *dir == "" {
		return errors.New("need -homeserver, -user, -dir and PLAINRECORDER_ACCESS_TOKEN")
	}
	cli, err := mautrix.NewClient(*hs, id.UserID(*user), token)
	if err != nil {
		return err
	}
	cli.DeviceID = id.DeviceID(*device)

	// pion's defaults. The two settings a server on loopback needs are the bot's too:
	// offer 127.0.0.1 candidates, and no mDNS (multicast) listener per connection.
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
		return err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	r := &recorder{
		cli: cli, dir: *dir, out: &lockedWriter{w: bufio.NewWriter(os.Stdout)}, calls: map[string]*call{},
		api: webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)),
	}

	syncer := mautrix.NewDefaultSyncer()
	syncer.ParseEventContent = false
	first := true
	syncer.OnSync(func(_ context.Context, _ *mautrix.RespSync, since string) bool {
		if first {
			// Whatever happened before this process started is not for it.
			first = false
			r.out.line("ready")
			return since != ""
		}
		return true
	})
	syncer.OnEvent(r.onEvent)
	cli.Syncer = syncer
	cli.Store = mautrix.NewMemorySyncStore()
	err = cli.SyncWithContext(ctx)
	r.hangupAll()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// lockedWriter writes whole lines to stdout from many goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (l *lockedWriter) line(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.WriteString(s + "\n")
	_ = l.w.Flush()
}

func (r *recorder) onEvent(ctx context.Context, evt *event.Event) {
	if evt.Sender == r.cli.UserID {
		return
	}
	raw := evt.Content.VeryRaw
	switch evt.Type.Type {
	case "m.room.member":
		var c struct {
			Membership string `json:"membership"`
		}
		if evt.StateKey != nil && *evt.StateKey == string(r.cli.UserID) && json.Unmarshal(raw, &c) == nil && c.Membership == "invite" {
			go func() {
				if _, err := r.cli.JoinRoomByID(ctx, evt.RoomID); err != nil {
					fmt.Fprintln(os.Stderr, "join:", err)
				}
			}()
		}
	case "m.call.invite":
		var c struct {
			CallID string `json:"call_id"`
			Offer  struct {
				SDP string `json:"sdp"`
			} `json:"offer"`
		}
		if json.Unmarshal(raw, &c) != nil || !validID(c.CallID) {
			return
		}
		cl := r.call(c.CallID, string(evt.RoomID))
		go r.answer(ctx, cl, c.Offer.SDP)
	case "m.call.candidates":
		var c struct {
			CallID     string `json:"call_id"`
			Candidates []struct {
				Candidate     string  `json:"candidate"`
				SDPMid        *string `json:"sdpMid"`
				SDPMLineIndex *uint16 `json:"sdpMLineIndex"`
			} `json:"candidates"`
		}
		if json.Unmarshal(raw, &c) != nil || !validID(c.CallID) {
			return
		}
		cl := r.call(c.CallID, string(evt.RoomID))
		cl.mu.Lock()
		defer cl.mu.Unlock()
		for _, x := range c.Candidates {
			if x.Candidate == "" {
				continue
			}
			ci := webrtc.ICECandidateInit{Candidate: x.Candidate, SDPMid: x.SDPMid, SDPMLineIndex: x.SDPMLineIndex}
			if cl.pc == nil || cl.pc.RemoteDescription() == nil {
				cl.pending = append(cl.pending, ci)
				continue
			}
			_ = cl.pc.AddICECandidate(ci)
		}
	case "m.call.hangup":
		var c struct {
			CallID string `json:"call_id"`
		}
		if json.Unmarshal(raw, &c) != nil {
			return
		}
		r.mu.Lock()
		cl := r.calls[c.CallID]
		r.mu.Unlock()
		if cl != nil {
			cl.end()
		}
	}
}

var idPattern = regexp.MustCompile(`^[0-9A-Za-z._~-]{1,255}$`)

func validID(s string) bool { return idPattern.MatchString(s) }

func (r *recorder) call(callID, room string) *call {
	r.mu.Lock()
	defer r.mu.Unlock()
	cl := r.calls[callID]
	if cl == nil {
		cl = &call{id: callID, room: room}
		r.calls[callID] = cl
	}
	return cl
}

// answer sets up the connection, answers with every candidate in the SDP (pion's examples
// wait for gathering to complete), and records each track that arrives.
func (r *recorder) answer(ctx context.Context, cl *call, offer string) {
	started, err := r.doAnswer(ctx, cl, offer)
	if err == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "call %s: %v\n", cl.id, err)
	cl.end() // a started call reports itself once its connection is closed
	if !started {
		go r.finish(cl)
	}
}

// doAnswer reports whether it started the call's finish (which reports the call).
func (r *recorder) doAnswer(ctx context.Context, cl *call, offer string) (bool, error) {
	folder := filepath.Join(r.dir, cl.id)
	if err := os.MkdirAll(folder, 0o755); err != nil {
		return false, err
	}
	pc, err := r.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return false, err
	}
	cl.mu.Lock()
	cl.pc = pc
	ended := cl.ended
	if !ended {
		cl.tracks.Add(1) // held until the connection ends: the call is final after it
	}
	cl.mu.Unlock()
	if ended {
		return false, errors.Join(errors.New("hung up before the answer"), pc.Close())
	}
	var once sync.Once
	connEnded := func() { once.Do(cl.tracks.Done) }
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			_ = pc.Close()
			connEnded()
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		cl.mu.Lock()
		cl.tracks.Add(1)
		n := len(cl.stats)
		cl.stats = append(cl.stats, TrackStat{})
		cl.mu.Unlock()
		go func() {
			defer cl.tracks.Done()
			st := saveTrack(t, folder, n)
			cl.mu.Lock()
			cl.stats[n] = st
			cl.mu.Unlock()
		}()
	})
	go r.finish(cl)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return true, fmt.Errorf("offer: %w", err)
	}
	cl.mu.Lock()
	for _, c := range cl.pending {
		_ = pc.AddICECandidate(c)
	}
	cl.pending = nil
	cl.mu.Unlock()
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return true, fmt.Errorf("answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return true, fmt.Errorf("answer: %w", err)
	}
	<-gathered
	content := map[string]any{
		"call_id": cl.id, "party_id": string(r.cli.DeviceID), "version": "1",
		"answer":              map[string]string{"type": "answer", "sdp": pc.LocalDescription().SDP},
		"capabilities":        map[string]bool{"m.call.transferee": false, "m.call.dtmf": false},
		"sdp_stream_metadata": map[string]any{},
	}
	if _, err := r.cli.SendMessageEvent(ctx, id.RoomID(cl.room), event.Type{Type: "m.call.answer", Class: event.MessageEventType}, content); err != nil {
		return true, fmt.Errorf("send the answer: %w", err)
	}
	return true, nil
}

// finish waits until the connection and every track have ended, then reports the call.
func (r *recorder) finish(cl *call) {
	cl.tracks.Wait()
	cl.mu.Lock()
	f := Final{CallID: cl.id, Tracks: append([]TrackStat(nil), cl.stats...)}
	cl.mu.Unlock()
	b, _ := json.Marshal(f)
	r.out.line("final " + string(b))
	r.mu.Lock()
	delete(r.calls, cl.id)
	r.mu.Unlock()
}

func (cl *call) end() {
	cl.mu.Lock()
	cl.ended = true
	pc := cl.pc
	cl.mu.Unlock()
	if pc != nil {
		_ = pc.Close()
	}
}

func (r *recorder) hangupAll() {
	r.mu.Lock()
	var all []*call
	for _, c := range r.calls {
		all = append(all, c)
	}
	r.mu.Unlock()
	for _, c := range all {
		c.end()
	}
}

// rtpWriter is what pion's oggwriter and ivfwriter have in common.
type rtpWriter interface {
	WriteRTP(*rtp.Packet) error
	Close() error
}

// opusSilence is a 20 ms Opus frame (CELT, fullband, stereo) that decodes to silence.
var opusSilence = []byte{0xfc, 0xff, 0xfe}

// saveTrack is pion's save-to-disk loop: ReadRTP until the track ends, each packet to the
// writer; for Opus, silence frames fill a jump in the RTP timestamps.
func saveTrack(t *webrtc.TrackRemote, folder string, n int) TrackStat {
	st := TrackStat{Kind: t.Kind().String()}
	var w rtpWriter
	var err error
	codec := t.Codec()
	switch codec.MimeType {
	case webrtc.MimeTypeOpus:
		st.File = fmt.Sprintf("track%d.ogg", n)
		w, err = oggwriter.New(filepath.Join(folder, st.File), codec.ClockRate, codec.Channels)
	case webrtc.MimeTypeVP8:
		st.File = fmt.Sprintf("track%d.ivf", n)
		w, err = ivfwriter.New(filepath.Join(folder, st.File), ivfwriter.WithCodec(codec.MimeType))
	default:
		err = fmt.Errorf("codec %s", codec.MimeType)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "track:", err)
		drain(t)
		return st
	}
	defer func() {
		if err := w.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close:", err)
		}
	}()
	opus := codec.MimeType == webrtc.MimeTypeOpus
	var (
		started          bool
		firstSeq, maxSeq uint64 // extended sequence numbers
		nextTS           uint32 // Opus: where the next packet should start
	)
	const frame = 960 // 20 ms at 48 kHz
	for {
		p, _, err := t.ReadRTP()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintln(os.Stderr, "read:", err)
			}
			break
		}
		st.Packets++
		seq := uint64(p.SequenceNumber)
		if !started {
			started, firstSeq, maxSeq = true, seq, seq
			nextTS = p.Timestamp
		} else {
			ext := maxSeq&^0xffff | seq
			switch {
			case ext+0x8000 < maxSeq:
				ext += 0x10000
			case ext > maxSeq+0x8000 && ext >= 0x10000:
				ext -= 0x10000
			}
			maxSeq = max(maxSeq, ext)
		}
		if opus {
			if gap := int32(p.Timestamp - nextTS); gap >= frame {
				fill := *p
				fill.Payload = opusSilence
				for k := range gap / frame {
					fill.Timestamp = nextTS + uint32(k)*frame
					if err := w.WriteRTP(&fill); err != nil {
						fmt.Fprintln(os.Stderr, "write:", err)
					}
					st.Silences++
				}
			} else if gap < 0 {
				continue // late or repeated: its place in the file has passed
			}
			nextTS = p.Timestamp + frame
		}
		if err := w.WriteRTP(p); err != nil {
			fmt.Fprintln(os.Stderr, "write:", err)
		}
	}
	if started {
		if expected := maxSeq - firstSeq + 1; expected > st.Packets {
			st.Lost = expected - st.Packets
		}
	}
	return st
}

func drain(t *webrtc.TrackRemote) {
	for {
		if _, _, err := t.ReadRTP(); err != nil {
			return
		}
	}
}

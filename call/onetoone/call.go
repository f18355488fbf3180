package onetoone

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/call/voip"
	voippeer "github.com/matrix-recorder/matrix-recorder/call/voip/peer"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Status is a snapshot of a call for notices and !status.
type Status struct {
	CallID    string
	RoomID    id.RoomID
	Peer      id.UserID
	PeerParty string
	State     call.State
	StartedAt time.Time
	Folder    string
	Tracks    int
	// Why says why the call ended, in words for the room.
	Why string
}

// Call is one 1:1 call: the MSC2746 peer (call/voip/peer) with the caller, plus what is
// 1:1's own: its recording, started before the answer goes out, its state, the limits on
// its length and tracks, and the notices. All of its state is owned by the peer's loop.
type Call struct {
	m         *Manager
	log       zerolog.Logger
	roomID    id.RoomID
	callID    string
	peer      id.UserID
	peerParty string
	invite    *voip.Invite
	p         *voippeer.Peer

	// owned by the loop
	state     call.State
	session   *recorder.Session
	maxTimer  *time.Timer
	startedAt time.Time

	// Shared with pion's OnTrack callback, which starts recording at once instead of
	// queueing behind signalling on the loop (packets would pile up meanwhile and
	// arrive in a burst, blurring the track's place on the timeline).
	mediaMu     sync.Mutex
	recSession  *recorder.Session
	tracks      int
	mediaClosed bool
	wg          sync.WaitGroup

	// read by status() from other goroutines
	mu       sync.Mutex
	snapshot Status
}

func newCall(m *Manager, ev callEvent, inv *voip.Invite, log zerolog.Logger) *Call {
	c := &Call{
		m: m, log: log, roomID: ev.RoomID, callID: inv.CallID, peer: ev.Sender,
		invite: inv, peerParty: inv.PartyID, state: call.StateRinging,
	}
	c.snapshot = Status{CallID: c.callID, RoomID: c.roomID, Peer: c.peer, PeerParty: c.peerParty, State: call.StateRinging}
	c.p = voippeer.New(m.ctx, voippeer.Config{
		PartyID: string(m.cfg.DeviceID), Party: "the caller",
		Factory: m.rtc, ICEServers: m.mx.ICEServers,
		ICETimeout: m.cfg.ICETimeout, GatherWait: m.cfg.GatherWait, CandidateBatch: m.cfg.CandidateBatch,
		Common:       c.common,
		Send:         c.send,
		BeforeAnswer: c.startRecording,
		Answered:     c.answered,
		Connected:    func() { c.setState(call.StateConnected) },
		Track:        c.onTrack,
		Ended:        c.ended,
	}, log)
	return c
}

func (c *Call) status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snapshot
}

func (c *Call) setState(s call.State) {
	c.state = s
	c.mu.Lock()
	c.snapshot.State = s
	c.mediaMu.Lock()
	c.snapshot.Tracks = c.tracks
	c.mediaMu.Unlock()
	c.snapshot.StartedAt = c.startedAt
	if c.session != nil {
		c.snapshot.Folder = c.session.Folder()
	}
	c.mu.Unlock()
}

func (c *Call) common() voip.Common {
	return voip.Common{CallID: c.callID, PartyID: string(c.m.cfg.DeviceID), Version: voip.V1}
}

// sendTimeout bounds one room event.
const sendTimeout = 15 * time.Second

// send puts one call event into the room (encrypted in an encrypted room).
func (c *Call) send(ctx context.Context, t event.Type, content any) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	_, err := c.m.mx.SendMessage(ctx, c.roomID, t, content)
	return err
}

// start answers the call with the caller's candidates that came before the invite was
// handled.
func (c *Call) start(early []voip.Candidate) {
	c.p.Answer(c.invite, early)
}

// startRecording starts the recording before the answer goes out, so the first packets
// have a home.
func (c *Call) startRecording(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	sess, err := c.m.rec.Start(ctx, recorder.CallInfo{CallID: c.callID, RoomID: string(c.roomID), Kind: recorder.KindOneToOne})
	if err != nil {
		return fmt.Errorf("start recording: %w", err)
	}
	c.session = sess
	c.mediaMu.Lock()
	c.recSession = sess
	c.mediaMu.Unlock()
	c.startedAt = sess.StartedAt()
	sess.AddParticipant(string(c.peer), c.peerParty, "", c.startedAt)
	return nil
}

// answered: the answer is out; the call is connecting and recording.
func (c *Call) answered() {
	c.setState(call.StateConnecting)
	c.log.Info().Str("folder", c.session.Folder()).Msg("Call answered; recording")
	if d := c.m.cfg.MaxDuration; d > 0 {
		c.maxTimer = time.AfterFunc(d, func() {
			c.p.Hangup(voippeer.End{Reason: voip.ReasonUserHangup, Send: true, Why: fmt.Sprintf("the maximum recording length of %s was reached", d)})
		})
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.m.ctx), sendTimeout)
	defer cancel()
	c.m.obs.CallStarted(ctx, c.status())
}

// onTrack records a new remote track. It runs on pion's callback goroutine.
func (c *Call) onTrack(pc *webrtc.PeerConnection, t *webrtc.TrackRemote, r *webrtc.RTPReceiver, purpose string, log zerolog.Logger) {
	c.mediaMu.Lock()
	sess := c.recSession
	if c.mediaClosed || sess == nil {
		c.mediaMu.Unlock()
		log.Debug().Msg("Track arrived outside a recording; ignoring it")
		go rtc.Drain(t)
		return
	}
	if c.tracks >= c.m.cfg.MaxTracks {
		c.mediaMu.Unlock()
		log.Warn().Msg("Too many tracks in this call; not recording this one")
		go rtc.Drain(t)
		return
	}
	c.tracks++
	c.wg.Add(1)
	c.mediaMu.Unlock()
	c.p.Post(func() { c.setState(c.state) })

	src := rtc.NewSource(pc, t, r, log)
	info := src.Info()
	info.UserID, info.DeviceID, info.Purpose, info.ClockDomain = string(c.peer), c.peerParty, purpose, c.callID
	log.Info().Str("purpose", purpose).Msg("Recording track")
	go func() {
		defer c.wg.Done()
		// A refused track (the recorder's file limit, a codec it cannot write), or one
		// whose recording ended first, is read on until it ends.
		defer src.Drain()
		tr, err := sess.AddTrack(info)
		if err != nil {
			log.Warn().Err(err).Msg("Track not recorded")
			return
		}
		if err := tr.Run(context.WithoutCancel(c.m.ctx), src); err != nil {
			log.Warn().Err(err).Msg("Track recording ended with an error")
		}
	}()
}

// hangup ends the call (a command, the caller leaving, shutdown).
func (c *Call) hangup(why string) {
	c.p.Hangup(voippeer.End{Reason: voip.ReasonUserHangup, Send: true, Why: why})
}

// ended finalises the recording and reports, once the peer connection is closed.
func (c *Call) ended(e voippeer.End) {
	if c.maxTimer != nil {
		c.maxTimer.Stop()
	}
	c.mu.Lock()
	c.snapshot.Why = e.Why
	c.mu.Unlock()
	c.mediaMu.Lock()
	c.mediaClosed = true
	c.mediaMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.m.ctx), sendTimeout)
	defer cancel()
	var (
		manifest recorder.Manifest
		err      error
	)
	if c.session != nil {
		manifest, err = c.session.Close(ctx)
		if err != nil {
			c.log.Error().Err(err).Msg("Finalising the recording")
		}
	}
	c.wg.Wait()
	c.setState(call.StateEnded)
	if c.session != nil {
		c.m.obs.CallEnded(ctx, c.status(), manifest, err)
	} else if e.Reason != voip.ReasonAnsweredElse && e.Why != "" {
		// The call never got as far as recording: tell the room why.
		c.m.obs.CallRefused(ctx, c.roomID, c.peer, e.Why)
	}
	c.m.forget(c)
}

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

// Call is one 1:1 call: the MSC2746 peer (call/voip/peer) with the caller, plus what is
// 1:1's own: its recording, started before the answer goes out, its state, the limits on
// its length and tracks. It is the call.Recording that Start returns. Its signalling state
// is owned by the peer's loop.
type Call struct {
	m         *Backend
	log       zerolog.Logger
	roomID    id.RoomID
	callID    string
	peer      id.UserID
	peerParty string
	invite    *voip.Invite
	p         *voippeer.Peer

	// owned by the loop
	session  *recorder.Session
	maxTimer *time.Timer

	// Shared with pion's OnTrack callback, which starts recording at once instead of
	// queueing behind signalling on the loop (packets would pile up meanwhile and
	// arrive in a burst, blurring the track's place on the timeline).
	mediaMu     sync.Mutex
	recSession  *recorder.Session
	tracks      int
	mediaClosed bool
	wg          sync.WaitGroup

	// begun is closed once the recording started (or the call ended before); done once
	// the call is over and its recording final (end, manifest, err are set then).
	begun     chan struct{}
	beginOnce sync.Once
	done      chan struct{}
	end       voippeer.End
	manifest  recorder.Manifest
	err       error

	mu    sync.Mutex
	state call.State
}

var _ call.Recording = (*Call)(nil)

func newCall(m *Backend, ev callEvent, inv *voip.Invite, log zerolog.Logger) *Call {
	c := &Call{
		m: m, log: log, roomID: ev.RoomID, callID: inv.CallID, peer: ev.Sender,
		invite: inv, peerParty: inv.PartyID, state: call.StateRinging,
		begun: make(chan struct{}), done: make(chan struct{}),
	}
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

func (c *Call) setState(s call.State) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}

// recording reports whether the call's recording started.
func (c *Call) recording() bool {
	c.mediaMu.Lock()
	defer c.mediaMu.Unlock()
	return c.recSession != nil
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
	sess.AddParticipant(string(c.peer), c.peerParty, "", sess.StartedAt())
	c.beginOnce.Do(func() { close(c.begun) })
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

// hangup ends the call (a stop, the caller leaving, shutdown).
func (c *Call) hangup(why string) {
	c.p.Hangup(voippeer.End{Reason: voip.ReasonUserHangup, Send: true, Why: why})
}

// ended finalises the recording once the peer connection is closed.
func (c *Call) ended(e voippeer.End) {
	if c.maxTimer != nil {
		c.maxTimer.Stop()
	}
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
	c.end, c.manifest, c.err = e, manifest, err
	c.beginOnce.Do(func() { close(c.begun) })
	close(c.done)
	c.m.forget(c)
}

// Status implements call.Recording.
func (c *Call) Status() call.Status {
	c.mu.Lock()
	state := c.state
	c.mu.Unlock()
	c.mediaMu.Lock()
	sess, tracks := c.recSession, c.tracks
	c.mediaMu.Unlock()
	st := call.Status{
		Backend: c.m.Name(), RoomID: c.roomID, State: state, Tracks: tracks,
		Participants: []call.ParticipantStatus{{UserID: c.peer, DeviceID: id.DeviceID(c.peerParty), Tracks: tracks}},
	}
	if sess != nil {
		st.StartedAt, st.Folder = sess.StartedAt(), sess.Folder()
		for _, t := range sess.Manifest().Tracks {
			st.Bytes += t.Bytes
		}
	}
	return st
}

// Stop implements call.Recording: it hangs up and waits for the recording to be final.
func (c *Call) Stop(ctx context.Context, reason string) (recorder.Manifest, error) {
	c.hangup(reason)
	select {
	case <-c.done:
		return c.manifest, c.err
	case <-ctx.Done():
		return recorder.Manifest{}, fmt.Errorf("finalise the 1:1 call's recording: %w", ctx.Err())
	}
}

// SetOptOut implements call.Recording. A 1:1 call records the caller who called the bot
// and nobody else: an opt-out changes nothing while it lasts (hanging up ends it).
func (c *Call) SetOptOut(_ context.Context, user id.UserID, optOut bool) {
	c.log.Debug().Stringer("user_id", user).Bool("opted_out", optOut).Msg("Opt-out during a 1:1 call; hang up to stop the recording")
}

// Done implements call.Recording.
func (c *Call) Done() <-chan struct{} { return c.done }

// Result implements call.Recording; it is final once Done is closed.
func (c *Call) Result() (recorder.Manifest, string, error) {
	<-c.done
	return c.manifest, c.end.Why, c.err
}

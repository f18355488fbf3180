package livekit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/ctxtime"
)

// Reconnect back-off of a connection to one SFU.
const (
	reconnectMin = time.Second
	reconnectMax = 30 * time.Second
	joinTimeout  = 30 * time.Second
	// stableAfter: a connection that lasted this long before it dropped was a good one;
	// the failure count starts again.
	stableAfter = time.Minute
)

// connection is the bot's subscriber connection to one LiveKit focus (multi-SFU calls have
// several). It keeps itself connected until stopped: when the SDK gives up on a connection
// (its own resume and restart failed), it fetches a new token and joins again; the tracks
// that come back continue as new parts of the same logical tracks.
type connection struct {
	r         *Recording
	transport matrixrtc.Transport
	log       zerolog.Logger
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}

	mu   sync.Mutex
	room *lksdk.Room
	// joining is the room being joined: its tracks can be subscribed before the join
	// returns, and they need its SIF trailer.
	joining   *lksdk.Room
	access    Access
	lastErr   error
	joins     int
	connected chan struct{} // closed at the first successful join
	joinOnce  sync.Once
	unused    time.Time // since when no member publishes here
}

func newConnection(r *Recording, t matrixrtc.Transport) *connection {
	ctx, cancel := context.WithCancel(r.ctx)
	return &connection{
		r: r, transport: t, ctx: ctx, cancel: cancel, done: make(chan struct{}), connected: make(chan struct{}),
		log: r.log.With().Str("focus", t.ServiceURL).Logger(),
	}
}

// run joins and rejoins until the connection is stopped, or gives up after
// maxJoinFailures failed joins in a row (a connection that drops within stableAfter of
// joining counts as one): the recording then cools the focus down before trying again.
// A focus the bot does not trust is given up at once.
func (c *connection) run() {
	defer close(c.done)
	backoff := reconnectMin
	failures := 0
	// fail counts a failure and waits before the next attempt (not before the first rejoin
	// after a drop, which the SDK's own resume already waited for); false: give up.
	fail := func(err error, wait bool) bool {
		failures++
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		if failures >= maxJoinFailures || errors.Is(err, ErrUntrustedFocus) || errors.Is(err, matrixrtc.ErrServiceURL) {
			c.log.Warn().Err(err).Int("attempts", failures).Msg("Giving up joining the call's LiveKit room")
			return false
		}
		if !wait {
			return true
		}
		c.log.Warn().Err(err).Dur("retry_in", backoff).Msg("Could not join the call's LiveKit room")
		if ctxtime.Sleep(c.ctx, backoff) != nil {
			return false
		}
		backoff = min(backoff*2, reconnectMax)
		return true
	}
	for c.ctx.Err() == nil {
		disconnected, err := c.join()
		if err != nil {
			if !fail(err, true) {
				return
			}
			continue
		}
		joined := time.Now()
		select {
		case <-c.ctx.Done():
		case reason := <-disconnected:
			c.log.Warn().Str("reason", reason).Msg("Disconnected from the LiveKit room; joining again")
			c.r.markAll(fmt.Sprintf("LiveKit connection to %s lost (%s); reconnecting", c.transport.ServiceURL, reason))
		}
		c.leave()
		if c.ctx.Err() != nil {
			return
		}
		if time.Since(joined) >= stableAfter {
			failures, backoff = 0, reconnectMin
			continue
		}
		if !fail(errors.New("the SFU dropped the connection soon after joining"), failures > 0) {
			return
		}
	}
}

// finished reports whether run has returned.
func (c *connection) finished() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// join fetches a token and joins the room as a subscriber. The channel receives the
// reason when the SDK reports the connection lost for good.
func (c *connection) join() (<-chan string, error) {
	acc, err := c.r.b.access(c.ctx, c.r.room, c.transport, c.r.own)
	if err != nil {
		return nil, err
	}
	disconnected := make(chan string, 1)
	cb := lksdk.NewRoomCallback()
	cb.OnTrackSubscribed = func(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		c.r.trackSubscribed(c, track, pub, rp)
	}
	cb.OnTrackUnsubscribed = func(_ *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		c.r.trackGone(c, pub.SID())
	}
	cb.OnTrackPublished = func(pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		c.r.trackPublished(pub)
	}
	cb.OnParticipantConnected = func(rp *lksdk.RemoteParticipant) {
		c.log.Info().Str("identity", rp.Identity()).Msg("Participant joined the LiveKit room")
	}
	cb.OnParticipantDisconnected = func(rp *lksdk.RemoteParticipant) {
		c.log.Info().Str("identity", rp.Identity()).Msg("Participant left the LiveKit room")
	}
	cb.OnReconnecting = func() { c.log.Info().Msg("LiveKit connection interrupted; the SDK is reconnecting") }
	cb.OnReconnected = func() { c.log.Info().Msg("LiveKit connection restored") }
	cb.OnDisconnectedWithReason = func(reason lksdk.DisconnectionReason) {
		select {
		case disconnected <- string(reason):
		default:
		}
	}
	room := lksdk.NewRoom(cb)
	c.mu.Lock()
	c.joining = room
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.joining = nil
		c.mu.Unlock()
	}()
	jctx, cancel := context.WithTimeout(c.ctx, joinTimeout)
	defer cancel()
	c.log.Info().Str("sfu", acc.URL).Str("livekit_room", acc.Room).Str("identity", acc.Identity).Str("endpoint", acc.Endpoint).Msg("Joining the call's LiveKit room")
	if err := room.JoinWithContextAndToken(jctx, acc.URL, acc.Token,
		lksdk.WithAutoSubscribe(true),
		// The SDK's own interceptors (NACK, receiver reports, TWCC for the SFU's bandwidth
		// estimate, RTT) stay; ours comes first so they share one header per stream
		// instead of allocating one per packet.
		lksdk.WithInterceptors([]interceptor.Factory{rtc.ReusedAttributes()}),
		lksdk.WithIncludeDefaultInterceptors(true),
		lksdk.WithLogger(lkLogger(c.log.With().Str("component", "lksdk").Logger())),
	); err != nil {
		room.Disconnect()
		return nil, fmt.Errorf("join LiveKit room %s at %s: %w", acc.Room, acc.URL, err)
	}
	c.mu.Lock()
	c.room, c.access, c.lastErr = room, acc, nil
	c.joins++
	c.mu.Unlock()
	c.joinOnce.Do(func() { close(c.connected) })
	c.log.Info().Str("livekit_room", room.Name()).Msg("Joined the LiveKit room")
	return disconnected, nil
}

// sifTrailer is the SFU's server-injected-frame trailer of the current room.
func (c *connection) sifTrailer() []byte {
	c.mu.Lock()
	room := c.room
	if room == nil {
		room = c.joining
	}
	c.mu.Unlock()
	if room == nil {
		return nil
	}
	return room.SifTrailer()
}

// currentRoom returns the joined room, or nil.
func (c *connection) currentRoom() *lksdk.Room {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.room
}

// err is the last join failure.
func (c *connection) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// stop leaves the room and waits for run to return.
func (c *connection) stop() {
	c.cancel()
	<-c.done
	c.leave()
}

// leave disconnects from the room the connection has joined, if any: once the SFU has
// dropped it (before joining again) and when the recording stops.
func (c *connection) leave() {
	c.mu.Lock()
	room := c.room
	c.room = nil
	c.mu.Unlock()
	if room != nil {
		room.Disconnect()
	}
}

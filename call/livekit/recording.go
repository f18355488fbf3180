package livekit

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/call/rtc"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
)

// Recording is one running recording of a room's Element Call call.
type Recording struct {
	b         *Backend
	room      id.RoomID
	log       zerolog.Logger
	sess      *recorder.Session
	keys      *keyStore
	own       *matrixrtc.Own
	encrypted bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// wake asks the supervisor to look at the memberships again.
	wake chan struct{}

	mu         sync.Mutex
	conns      map[string]*connection // by JWT service URL
	tracks     map[*trackRec]struct{}
	optOut     map[id.UserID]bool
	present    *matrixrtc.Presence // who is in the call, for the manifest
	names      map[id.UserID]string
	noKeyTold  map[matrixrtc.DeviceKey]bool
	emptySince time.Time
	undecrypt  map[matrixrtc.DeviceKey]uint64
	// foci: what is known about each focus the members name; retired: foci whose
	// connections gave up. Bounded by maxFociChecked.
	foci           map[string]*focusVerdict
	retired        map[string]focusRetire
	fociCapWarned  bool
	refusalNotices int

	// joiners tells the room about people who join while it records; reconciled: the
	// first reconcile is done (those in the call then are named by the start notice).
	joiners    *call.Joiners
	reconciled bool
	// caller, for a direct call the bot answered: the recording ends when they leave the
	// call. answerIntent is the call's intent as its ring said.
	caller       id.UserID
	answerIntent string
	callerSeen   bool
	// audioOnly: the call's intent is audio; video is not subscribed.
	audioOnly bool

	stopOnce sync.Once
	stopped  chan struct{}
	done     chan struct{}
	manifest recorder.Manifest
	why      string
	err      error
}

// trackRec is one subscribed track being recorded.
type trackRec struct {
	conn   *connection
	pubSID string
	device matrixrtc.DeviceKey
	cancel context.CancelFunc
}

var _ call.Recording = (*Recording)(nil)

// Status is a snapshot for !status.
func (r *Recording) Status() call.Status {
	m := r.sess.Manifest()
	st := call.Status{Backend: r.b.Name(), RoomID: r.room, StartedAt: r.sess.StartedAt(), Folder: r.sess.Folder()}
	for _, f := range m.Tracks {
		st.Bytes += f.Bytes
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st.Tracks = len(r.tracks)
	perDevice := map[matrixrtc.DeviceKey]int{}
	for t := range r.tracks {
		perDevice[t.device]++
	}
	withheld := 0
	joined := r.joinedLocked()
	for _, k := range r.present.Devices() {
		out := r.optOut[k.User]
		if out && joined {
			withheld++
		}
		st.Participants = append(st.Participants, call.ParticipantStatus{
			UserID: k.User, DeviceID: k.Device, Tracks: perDevice[k], OptedOut: out,
		})
	}
	// The tracks of those who opted out are unsubscribed, not lost: while the bot is in the
	// call they count as live, as in mesh, which goes on receiving them (call.RecordingState).
	st.State = call.RecordingState(r.done, len(r.tracks)+withheld)
	return st
}

// joinedLocked reports whether the bot is in the call: one of its SFU connections has
// joined its LiveKit room.
func (r *Recording) joinedLocked() bool {
	for _, c := range r.conns {
		if c.currentRoom() != nil {
			return true
		}
	}
	return false
}

// Mark adds a note on the timeline.
func (r *Recording) Mark(user id.UserID, text string, at time.Time) {
	r.sess.AddMarker(string(user), text, at)
}

// markAll notes an event of the recording itself on the timeline.
func (r *Recording) markAll(text string) { r.sess.AddMarker("", text, time.Now()) }

// Done is closed when the recording has ended (on its own or by Stop).
func (r *Recording) Done() <-chan struct{} { return r.done }

// Result returns the final manifest and why the recording ended.
func (r *Recording) Result() (recorder.Manifest, string, error) {
	<-r.stopped
	return r.manifest, r.why, r.err
}

// SetOptOut stops recording a user (their tracks are unsubscribed, so the SFU stops
// sending them) or resumes it (their tracks are subscribed again and continue in new parts).
func (r *Recording) SetOptOut(_ context.Context, user id.UserID, optOut bool) {
	r.mu.Lock()
	if r.optOut[user] == optOut {
		r.mu.Unlock()
		return
	}
	r.optOut[user] = optOut
	var stop []*trackRec
	for t := range r.tracks {
		if t.device.User == user && optOut {
			stop = append(stop, t)
		}
	}
	conns := r.connsLocked()
	r.mu.Unlock()
	r.sess.SetOptOut(string(user), optOut, time.Now())
	for _, t := range stop {
		t.cancel()
	}
	for _, c := range conns {
		room := c.currentRoom()
		if room == nil {
			continue
		}
		for _, rp := range room.GetRemoteParticipants() {
			dev, ok := r.deviceOf(rp.Identity())
			if !ok || dev.User != user {
				continue
			}
			for _, p := range rp.TrackPublications() {
				if pub, ok := p.(*lksdk.RemoteTrackPublication); ok {
					if err := pub.SetSubscribed(!optOut); err != nil {
						r.log.Warn().Err(err).Str("track", pub.SID()).Msg("Could not change the track subscription")
					}
				}
			}
		}
	}
	r.log.Info().Stringer("user_id", user).Bool("opted_out", optOut).Msg("Recording preference changed")
}

func (r *Recording) connsLocked() []*connection {
	out := make([]*connection, 0, len(r.conns))
	for _, c := range r.conns {
		out = append(out, c)
	}
	return out
}

// deviceOf maps a LiveKit identity to the Matrix device behind it.
func (r *Recording) deviceOf(identity string) (matrixrtc.DeviceKey, bool) {
	return identityDevice(identity, r.b.members(r.room, time.Now()))
}

// trackSubscribed starts recording a track the SFU now sends (called by the SDK).
func (r *Recording) trackSubscribed(c *connection, track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
	identity := rp.Identity()
	dev, known := r.deviceOf(identity)
	if !known {
		// Not a Matrix member we know (yet): recorded under its LiveKit identity.
		dev = matrixrtc.DeviceKey{User: id.UserID(identity)}
	}
	log := r.log.With().Str("identity", identity).Stringer("user_id", dev.User).Stringer("device_id", dev.Device).
		Str("track_sid", pub.SID()).Str("source", pub.Source().String()).Str("mime", track.Codec().MimeType).Logger()
	r.mu.Lock()
	if r.ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	if r.optOut[dev.User] {
		r.mu.Unlock()
		log.Info().Msg("Not recording the track of someone who opted out")
		go func() { _ = pub.SetSubscribed(false) }()
		return
	}
	if r.audioOnly && track.Kind() == webrtc.RTPCodecTypeVideo {
		r.mu.Unlock()
		log.Info().Msg("Not recording video in an audio call")
		go func() { _ = pub.SetSubscribed(false) }()
		return
	}
	name := r.names[dev.User]
	r.mu.Unlock()

	spec, ok := codec.ByMimeType(track.Codec().MimeType)
	if !ok {
		log.Warn().Msg("Track codec cannot be recorded; skipping it")
		return
	}
	info := rtc.TrackInfo(track)
	info.UserID, info.DeviceID, info.DisplayName = string(dev.User), string(dev.Device), name
	info.Source = SourceName(pub.Source(), spec.IsVideo())
	// The SFU's sender reports put every track it forwards on one clock.
	info.ClockDomain = "livekit:" + c.transport.ServiceURL
	// Element Call encrypts every track in an encrypted room and says so in the publication.
	// A track of an encrypted room that says it is not encrypted is decrypted when its frames
	// authenticate under a participant's key, and written as it is otherwise.
	flagged := pub.TrackInfo().GetEncryption() != livekit.Encryption_NONE
	ssrc := uint32(track.SSRC())
	o := trackOptions{
		sif: c.sifTrailer(), maybe: !flagged, wait: r.b.opts.KeyWait, log: log,
		pli:           func() { rp.WritePLI(webrtc.SSRC(ssrc)) },
		noKey:         func() { r.noKey(dev) },
		undecryptable: func() { r.countUndecryptable(dev) },
	}
	if flagged || r.encrypted {
		o.ring = r.keys.ring(dev)
	}
	src, dec, err := newTrackSource(trackReader{track}, ssrc, spec, o)
	if err != nil {
		log.Error().Err(err).Msg("Encrypted track in a codec without an encryption format; skipping it")
		return
	}
	var opts []recorder.RunOption
	if dec != nil {
		opts = append(opts, recorder.WithDecrypter(dec))
	}
	pub.OnRTCP(src.rtcp)
	ctx, cancel := context.WithCancel(r.ctx)
	tr := &trackRec{conn: c, pubSID: pub.SID(), device: dev, cancel: cancel}
	r.mu.Lock()
	r.tracks[tr] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	if spec.IsVideo() {
		// Simulcast: the highest layer (the SDK's default too); a layer switch shows up as a
		// resolution change, which the writer turns into a new part.
		if err := pub.SetVideoQuality(livekit.VideoQuality_HIGH); err != nil {
			log.Debug().Err(err).Msg("Could not ask for the highest layer")
		}
	}
	log.Info().Bool("encrypted", flagged).Msg("Recording track")
	go func() {
		defer r.wg.Done()
		defer func() {
			cancel()
			r.mu.Lock()
			delete(r.tracks, tr)
			r.mu.Unlock()
		}()
		rt, err := r.sess.AddTrack(info)
		if err != nil {
			log.Error().Err(err).Msg("Cannot record this track")
			r.drain(ctx, track)
			return
		}
		if err := rt.Run(ctx, src, opts...); err != nil {
			log.Warn().Err(err).Msg("Track recording ended with an error")
		}
		log.Info().Msg("Track recording ended")
	}()
}

// trackPublished turns down video published in an audio call before the SFU sends it.
func (r *Recording) trackPublished(pub *lksdk.RemoteTrackPublication) {
	r.mu.Lock()
	skip := r.audioOnly && pub.Kind() == lksdk.TrackKindVideo
	r.mu.Unlock()
	if skip {
		if err := pub.SetSubscribed(false); err != nil {
			r.log.Debug().Err(err).Str("track_sid", pub.SID()).Msg("Could not turn down a video track")
		}
	}
}

// setAudioOnly follows the call's intent: video is not recorded while it is audio; when it
// turns to video (someone's intent says so), the video published meanwhile is subscribed.
func (r *Recording) setAudioOnly(audio bool) {
	r.mu.Lock()
	if r.audioOnly == audio {
		r.mu.Unlock()
		return
	}
	r.audioOnly = audio
	conns := r.connsLocked()
	optOut := maps.Clone(r.optOut)
	r.mu.Unlock()
	r.log.Info().Bool("audio_only", audio).Msg("Following the call's intent (audio: no video is recorded)")
	if audio {
		return // tracks being recorded go on; new video is turned down
	}
	for _, c := range conns {
		room := c.currentRoom()
		if room == nil {
			continue
		}
		for _, rp := range room.GetRemoteParticipants() {
			if dev, ok := r.deviceOf(rp.Identity()); ok && optOut[dev.User] {
				continue
			}
			for _, p := range rp.TrackPublications() {
				if pub, ok := p.(*lksdk.RemoteTrackPublication); ok && pub.Kind() == lksdk.TrackKindVideo && !pub.IsSubscribed() {
					if err := pub.SetSubscribed(true); err != nil {
						r.log.Warn().Err(err).Str("track_sid", pub.SID()).Msg("Could not subscribe to a video track")
					}
				}
			}
		}
	}
}

// drain reads and discards a track that cannot be recorded, so the SDK's buffers do not
// fill, until it ends.
func (r *Recording) drain(ctx context.Context, t *webrtc.TrackRemote) {
	buf := make([]byte, 1600)
	for ctx.Err() == nil {
		_ = t.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := t.Read(buf); err != nil && !isTimeoutErr(err) {
			return
		}
	}
}

// trackGone ends the recording of an unsubscribed track.
func (r *Recording) trackGone(c *connection, sid string) {
	r.mu.Lock()
	var found []*trackRec
	for t := range r.tracks {
		if t.conn == c && t.pubSID == sid {
			found = append(found, t)
		}
	}
	r.mu.Unlock()
	for _, t := range found {
		t.cancel()
	}
}

func (r *Recording) countUndecryptable(dev matrixrtc.DeviceKey) {
	r.mu.Lock()
	r.undecrypt[dev]++
	r.mu.Unlock()
}

// noKey tells the room, once per device, that media arrives without its key.
func (r *Recording) noKey(dev matrixrtc.DeviceKey) {
	r.mu.Lock()
	told := r.noKeyTold[dev]
	r.noKeyTold[dev] = true
	r.mu.Unlock()
	if told {
		return
	}
	r.log.Warn().Stringer("user_id", dev.User).Stringer("device_id", dev.Device).Msg("Media arrives but its key does not")
	msg := fmt.Sprintf("I receive %s's media but not the key to decrypt it, so it cannot be recorded yet. "+
		"If their client only shares keys with verified devices, my device must be cross-signed (see the recorder's README).", dev.User)
	go r.b.mx.Notice(context.WithoutCancel(r.ctx), r.room, msg)
}

// SourceName names a LiveKit track source as the recorder does; a source LiveKit leaves
// unknown is the camera for video and the microphone for audio.
func SourceName(s livekit.TrackSource, video bool) string {
	switch s {
	case livekit.TrackSource_CAMERA:
		return recorder.SourceCamera
	case livekit.TrackSource_MICROPHONE:
		return recorder.SourceMicrophone
	case livekit.TrackSource_SCREEN_SHARE:
		return recorder.SourceScreenShare
	case livekit.TrackSource_SCREEN_SHARE_AUDIO:
		return recorder.SourceScreenShareAudio
	}
	if video {
		return recorder.SourceCamera
	}
	return recorder.SourceMicrophone
}

// addKey takes a media key for this call.
func (r *Recording) addKey(k MediaKey) {
	ok, err := r.keys.add(k)
	switch {
	case err != nil:
		r.log.Warn().Err(err).Stringer("user_id", k.Device.User).Msg("Media key not usable")
	case ok:
		r.log.Info().Stringer("user_id", k.Device.User).Stringer("device_id", k.Device.Device).Uint8("key_index", k.Index).Msg("Media key received")
	default:
		r.log.Debug().Stringer("user_id", k.Device.User).Uint8("key_index", k.Index).Msg("Older media key ignored")
	}
}

// poke asks the supervisor to reconcile soon.
func (r *Recording) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// stopTimeout bounds finalising a recording that ended on its own.
const stopTimeout = 30 * time.Second

// supervise follows the call's memberships: it joins the foci members publish on, notes who
// takes part, and ends the recording when everybody left.
func (r *Recording) supervise() {
	defer r.wg.Done()
	t := time.NewTicker(r.b.opts.Tick)
	defer t.Stop()
	r.reconcile()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.reconcile()
		case <-r.wake:
			r.reconcile()
		}
	}
}

// reconcile brings connections and participants in line with the current memberships.
func (r *Recording) reconcile() {
	now := time.Now()
	members := r.b.members(r.room, now)
	transports := matrixrtc.PublishTransports(members)
	r.updateParticipants(members, now)
	intent := matrixrtc.ConsensusIntent(members)
	if intent == "" {
		intent = r.answerIntent
	}
	r.setAudioOnly(intent == matrixrtc.IntentAudio)

	r.mu.Lock()
	if r.ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	for url, c := range r.conns {
		if c.finished() {
			delete(r.conns, url)
			r.connectionEndedLocked(c, now)
		}
	}
	want := map[string]matrixrtc.Transport{}
	for _, t := range r.trustedLocked(transports, now) {
		want[t.ServiceURL] = t
	}
	var stop []*connection
	for url, c := range r.conns {
		if _, ok := want[url]; ok {
			c.unused = time.Time{}
			continue
		}
		if c.unused.IsZero() {
			c.unused = now
		} else if now.Sub(c.unused) > r.b.opts.EndGrace {
			stop = append(stop, c)
			delete(r.conns, url)
		}
	}
	for url, t := range want {
		if r.conns[url] == nil {
			c := newConnection(r, t)
			r.conns[url] = c
			r.log.Info().Str("focus", url).Msg("Joining a LiveKit focus the call uses")
			go c.run()
		}
	}
	ended, why := false, "everyone left the call"
	switch {
	case r.caller != "":
		// A direct call ends with its caller (or with the session): no grace time.
		in := slices.ContainsFunc(members, func(m matrixrtc.Member) bool { return m.UserID == r.caller })
		switch {
		case in:
			r.callerSeen = true
		case r.callerSeen || len(members) == 0:
			ended, why = true, fmt.Sprintf("%s left the call", r.caller)
		}
	case len(members) == 0:
		if r.emptySince.IsZero() {
			r.emptySince = now
		} else if now.Sub(r.emptySince) >= r.b.opts.EndGrace {
			ended = true
		}
	default:
		r.emptySince = time.Time{}
	}
	r.mu.Unlock()
	for _, c := range stop {
		r.log.Info().Str("focus", c.transport.ServiceURL).Msg("Nobody publishes on this focus any more; leaving it")
		go c.stop()
	}
	if ended {
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), stopTimeout)
			defer cancel()
			_, _ = r.Stop(ctx, why)
		}()
	}
}

// updateParticipants records joins and leaves of call members in the manifest.
func (r *Recording) updateParticipants(members []matrixrtc.Member, now time.Time) {
	r.mu.Lock()
	joined, left := r.present.Update(members, now)
	var unknown []id.UserID
	for _, m := range joined {
		if _, ok := r.names[m.UserID]; !ok {
			unknown = append(unknown, m.UserID)
		}
	}
	r.mu.Unlock()
	if len(unknown) > 0 {
		if names, err := r.b.mx.JoinedMembers(r.ctx, r.room); err == nil {
			r.mu.Lock()
			for u, n := range names {
				r.names[u] = n
			}
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	announce := r.reconciled
	r.reconciled = true
	r.mu.Unlock()
	for _, m := range joined {
		r.mu.Lock()
		name, out := r.names[m.UserID], r.optOut[m.UserID]
		r.mu.Unlock()
		r.sess.AddParticipant(string(m.UserID), string(m.DeviceID), name, now)
		r.log.Info().Stringer("user_id", m.UserID).Stringer("device_id", m.DeviceID).Msg("Joined the call")
		// Everyone in a recorded call is told: those there at the start by the start
		// notice, who comes later by a notice of their own.
		if announce {
			r.joiners.Joined(m.UserID, "", out)
		} else {
			r.joiners.Seen(m.UserID)
		}
	}
	for _, m := range left {
		r.sess.RemoveParticipant(string(m.UserID), string(m.DeviceID), now)
		r.log.Info().Stringer("user_id", m.UserID).Stringer("device_id", m.DeviceID).Msg("Left the call")
	}
}

// Stop ends the recording: leaves every SFU, finalises every file, removes the bot's
// membership and returns the manifest. Calls after the first wait for its result.
func (r *Recording) Stop(ctx context.Context, reason string) (recorder.Manifest, error) {
	r.stopOnce.Do(func() { r.stop(ctx, reason, false) })
	<-r.stopped
	return r.manifest, r.err
}

// Pause stops as Stop does, membership removal included (clients see the bot leave, and
// send their keys to its new membership when the next start rejoins), but leaves the
// folder to be resumed (call.Pauser).
func (r *Recording) Pause(ctx context.Context, reason string) (recorder.Manifest, error) {
	r.stopOnce.Do(func() { r.stop(ctx, reason, true) })
	<-r.stopped
	return r.manifest, r.err
}

var _ call.Pauser = (*Recording)(nil)

func (r *Recording) stop(ctx context.Context, reason string, pause bool) {
	r.log.Info().Str("reason", reason).Msg("Stopping the recording")
	r.mu.Lock()
	conns := r.connsLocked()
	r.conns = map[string]*connection{}
	r.mu.Unlock()
	// Leaving the rooms ends every track; the session then finalises the files.
	r.cancel()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop()
		}()
	}
	wg.Wait()
	// Frames that never decrypted are counted in their file's stats; a track whose key never
	// came has no file at all, and the recorder notes that in the manifest's warnings.
	m, err := r.sess.End(ctx, pause, reason)
	waited := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-ctx.Done():
	}
	if rerr := r.own.Remove(context.WithoutCancel(ctx)); rerr != nil {
		r.log.Warn().Err(rerr).Msg("Could not remove the bot's call membership")
	}
	r.mu.Lock()
	var undec []string
	for d, n := range r.undecrypt {
		undec = append(undec, fmt.Sprintf("%s: %d", d, n))
	}
	r.mu.Unlock()
	if len(undec) > 0 {
		sort.Strings(undec)
		r.log.Warn().Str("frames", strings.Join(undec, ", ")).Msg("Some frames could not be decrypted")
	}
	r.b.finished(r)
	r.manifest, r.why, r.err = m, reason, err
	close(r.stopped)
	close(r.done)
}

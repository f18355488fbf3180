package meshpeer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// js-sdk constants.
const (
	deviceTimeout  = time.Hour       // DEVICE_TIMEOUT: member entry lifetime
	retryInterval  = 5 * time.Second // GroupCall.retryCallInterval
	maxCallRetries = 3
)

type devKey struct {
	user   id.UserID
	device id.DeviceID
}

func (k devKey) String() string { return string(k.user) + "/" + string(k.device) }

// participantState is a device in the call, from member state.
type participantState struct {
	session       string
	screensharing bool
}

// Group is the participant's part in one group call (js-sdk GroupCall, entered).
type Group struct {
	c    *Client
	room id.RoomID
	conf string
	log  zerolog.Logger

	mu            sync.Mutex
	session       string
	entered       bool
	calls         map[devKey]*Call
	retries       map[devKey]int
	reorder       *jsReorder
	early         map[string][]Received // candidates of calls not seen yet
	media         *localMedia
	mediaOpts     Media
	screen        *localTrack
	enteredAt     time.Time
	stopRetryLoop chan struct{}
}

// Enter joins the group call conf in room with the given media: local media starts, the
// member entry is published, and calls are placed to the participants this device calls.
func (c *Client) Enter(ctx context.Context, room id.RoomID, conf string, m Media) (*Group, error) {
	g := &Group{
		c: c, room: room, conf: conf, log: c.log.With().Str("conf_id", conf).Logger(),
		calls: map[devKey]*Call{}, retries: map[devKey]int{}, reorder: newJSReorder(), early: map[string][]Received{},
		mediaOpts: m,
	}
	c.mu.Lock()
	if c.group != nil {
		c.mu.Unlock()
		return nil, errors.New("already in a group call")
	}
	c.group = g
	c.mu.Unlock()
	if err := g.enter(ctx); err != nil {
		c.mu.Lock()
		c.group = nil
		c.mu.Unlock()
		return nil, err
	}
	return g, nil
}

func (g *Group) enter(ctx context.Context) error {
	media, err := newLocalMedia(g.mediaOpts)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.media = media
	g.session = randomID(10)
	g.entered = true
	g.enteredAt = time.Now()
	g.stopRetryLoop = make(chan struct{})
	stop := g.stopRetryLoop
	g.mu.Unlock()
	media.start()
	if err := g.publish(ctx); err != nil {
		return err
	}
	go g.retryLoop(stop)
	g.reconcile()
	return nil
}

// EnteredAt is when the participant last entered (published its member entry).
func (g *Group) EnteredAt() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.enteredAt
}

// Session is the current session id.
func (g *Group) Session() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.session
}

// Leave hangs up every call, stops media and removes the member entry (js-sdk leave()).
func (g *Group) Leave(ctx context.Context) error {
	g.stop(ctx, true)
	g.c.mu.Lock()
	if g.c.group == g {
		g.c.group = nil
	}
	g.c.mu.Unlock()
	return g.unpublish(ctx)
}

// stop ends every call (hanging up when hangup) and stops local media.
func (g *Group) stop(ctx context.Context, hangup bool) {
	g.mu.Lock()
	calls := make([]*Call, 0, len(g.calls))
	for _, call := range g.calls {
		calls = append(calls, call)
	}
	g.calls = map[devKey]*Call{}
	g.entered = false
	media, screen := g.media, g.screen
	g.screen = nil
	if g.stopRetryLoop != nil {
		close(g.stopRetryLoop)
		g.stopRetryLoop = nil
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, call := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if hangup {
				call.Hangup(ctx, "user_hangup")
			} else {
				call.close()
			}
		}()
	}
	wg.Wait()
	if media != nil {
		media.stop()
	}
	if screen != nil {
		screen.stop()
	}
}

// Reload is a page reload: the calls die without a hangup, the client comes back with a
// new session id (same device) and new media, and connects again.
func (g *Group) Reload(ctx context.Context) error {
	g.stop(ctx, false)
	g.mu.Lock()
	g.retries = map[devKey]int{}
	g.mu.Unlock()
	return g.enter(ctx)
}

// publish writes the member entry (js-sdk addDeviceToMemberState).
func (g *Group) publish(ctx context.Context) error {
	g.mu.Lock()
	feeds := []map[string]string{{"purpose": "m.usermedia"}}
	if g.screen != nil {
		feeds = append(feeds, map[string]string{"purpose": "m.screenshare"})
	}
	self := map[string]any{
		"device_id": g.c.DeviceID(), "session_id": g.session,
		"expires_ts": time.Now().Add(deviceTimeout).UnixMilli(), "feeds": feeds,
	}
	g.mu.Unlock()
	return g.updateDevices(ctx, self)
}

func (g *Group) unpublish(ctx context.Context) error { return g.updateDevices(ctx, nil) }

// updateDevices rewrites our member event: other calls and other valid devices kept, this
// device replaced by self (or removed when nil), as js-sdk's updateDevices does.
func (g *Group) updateDevices(ctx context.Context, self map[string]any) error {
	raw := g.c.MemberContent(g.room, g.c.UserID())
	var content map[string]json.RawMessage
	_ = json.Unmarshal(raw, &content)
	var calls []map[string]json.RawMessage
	_ = json.Unmarshal(content["m.calls"], &calls)
	var newCalls []any
	var devices []any
	now := time.Now()
	for _, call := range calls {
		var callID string
		_ = json.Unmarshal(call["m.call_id"], &callID)
		if callID != g.conf {
			newCalls = append(newCalls, call)
			continue
		}
		var devs []map[string]json.RawMessage
		_ = json.Unmarshal(call["m.devices"], &devs)
		for _, d := range devs {
			dev, ok := parseDevice(d, now)
			if ok && dev.id != g.c.DeviceID() {
				devices = append(devices, d)
			}
		}
	}
	if self != nil {
		devices = append(devices, self)
	}
	if len(devices) > 0 {
		newCalls = append(newCalls, map[string]any{"m.call_id": g.conf, "m.devices": devices})
	}
	if newCalls == nil {
		newCalls = []any{}
	}
	_, err := g.c.cli.SendStateEvent(ctx, g.room, event.Type{Type: TypeMember, Class: event.StateEventType}, string(g.c.UserID()), map[string]any{"m.calls": newCalls})
	if err != nil {
		return fmt.Errorf("send member state: %w", err)
	}
	return nil
}

type parsedDevice struct {
	id            id.DeviceID
	session       string
	screensharing bool
}

// parseDevice applies js-sdk's validity checks.
func parseDevice(d map[string]json.RawMessage, now time.Time) (parsedDevice, bool) {
	var dev, sess string
	var exp float64
	var feeds []struct {
		Purpose string `json:"purpose"`
	}
	if !isString(d["device_id"]) || !isString(d["session_id"]) || json.Unmarshal(d["device_id"], &dev) != nil ||
		json.Unmarshal(d["session_id"], &sess) != nil || json.Unmarshal(d["expires_ts"], &exp) != nil ||
		!isArray(d["feeds"]) || json.Unmarshal(d["feeds"], &feeds) != nil {
		return parsedDevice{}, false
	}
	if exp <= float64(now.UnixMilli()) {
		return parsedDevice{}, false
	}
	p := parsedDevice{id: id.DeviceID(dev), session: sess}
	for _, f := range feeds {
		if f.Purpose == "m.screenshare" {
			p.screensharing = true
		}
	}
	return p, true
}

func isString(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '"'
}

func isArray(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '['
}

// participants returns the devices in the call (js-sdk updateParticipants), without this
// device.
func (g *Group) participants() map[devKey]participantState {
	g.c.mu.Lock()
	defer g.c.mu.Unlock()
	out := map[devKey]participantState{}
	rv := g.c.rooms[g.room]
	if rv == nil {
		return out
	}
	now := time.Now()
	for user, raw := range rv.members {
		if !rv.joined[user] {
			continue
		}
		var content struct {
			Calls []struct {
				CallID  string                       `json:"m.call_id"`
				Devices []map[string]json.RawMessage `json:"m.devices"`
			} `json:"m.calls"`
		}
		if json.Unmarshal(raw, &content) != nil {
			continue
		}
		for _, call := range content.Calls {
			if call.CallID != g.conf {
				continue
			}
			for _, d := range call.Devices {
				p, ok := parseDevice(d, now)
				if !ok || (user == g.c.UserID() && p.id == g.c.DeviceID()) {
					continue
				}
				out[devKey{user, p.id}] = participantState{session: p.session, screensharing: p.screensharing}
			}
		}
	}
	return out
}

// wantsOutgoingCall is js-sdk's rule: the lower user id (then device id) places the call.
func (g *Group) wantsOutgoingCall(user id.UserID, device id.DeviceID) bool {
	return string(user) >= string(g.c.UserID()) && (user != g.c.UserID() || string(device) > string(g.c.DeviceID()))
}

// reconcile places calls to participants this device calls and has no call with in their
// current session (js-sdk placeOutgoingCalls).
func (g *Group) reconcile() {
	parts := g.participants()
	keys := make([]devKey, 0, len(parts))
	for k := range parts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.entered {
		return
	}
	for _, k := range keys {
		p := parts[k]
		prev := g.calls[k]
		if (prev != nil && prev.remoteSession == p.session) || !g.wantsOutgoingCall(k.user, k.device) {
			continue
		}
		if prev != nil {
			go prev.Hangup(context.Background(), "new_session")
		}
		call := g.newCall(k, genCallID(), true, p.session)
		g.calls[k] = call
		go call.place(p.screensharing)
	}
}

// retryLoop is js-sdk's onRetryCallLoop: calls that did not reach the current session are
// placed again, up to three times.
func (g *Group) retryLoop(stop chan struct{}) {
	t := time.NewTicker(retryInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		parts := g.participants()
		g.mu.Lock()
		need := false
		for k, p := range parts {
			call := g.calls[k]
			if (call == nil || call.remoteSession != p.session || call.isEnded()) && g.wantsOutgoingCall(k.user, k.device) && g.retries[k] < maxCallRetries {
				g.retries[k]++
				if call != nil && call.isEnded() {
					delete(g.calls, k)
				}
				need = true
			}
		}
		g.mu.Unlock()
		if need {
			g.reconcile()
		}
	}
}

// onSync handles the call events of one sync, after its room events, as js-sdk does.
func (g *Group) onSync(msgs []Received) {
	for _, m := range msgs {
		for _, d := range g.reorder.push(m) {
			g.handle(d)
		}
	}
	g.reconcile()
}

// handle checks a message as js-sdk's CallEventHandler and routes it to its call.
func (g *Group) handle(m Received) {
	var c struct {
		CallID          string          `json:"call_id"`
		PartyID         string          `json:"party_id"`
		Version         json.RawMessage `json:"version"`
		ConfID          string          `json:"conf_id"`
		DeviceID        string          `json:"device_id"`
		SenderSessionID string          `json:"sender_session_id"`
		DestSessionID   string          `json:"dest_session_id"`
		Seq             *int64          `json:"seq"`
		MsgID           string          `json:"org.matrix.msgid"`
	}
	if err := json.Unmarshal(m.Content, &c); err != nil {
		g.c.violation("%s from %s: not JSON: %v", m.Type, m.Sender, err)
		return
	}
	g.mu.Lock()
	session, entered := g.session, g.entered
	g.mu.Unlock()
	switch {
	case c.ConfID == "":
		g.c.violation("%s from %s without conf_id", m.Type, m.Sender)
		return
	case c.ConfID != g.conf:
		return // another group call
	case c.DeviceID == "":
		g.c.violation("%s from %s without device_id", m.Type, m.Sender)
		return
	}
	if string(c.Version) != `"1"` {
		g.c.violation("%s from %s: version %s, js-sdk sends \"1\"", m.Type, m.Sender, c.Version)
	}
	if c.PartyID != c.DeviceID {
		g.c.violation("%s from %s: party_id %q is not its device_id %q", m.Type, m.Sender, c.PartyID, c.DeviceID)
	}
	if c.SenderSessionID == "" || c.Seq == nil || c.MsgID == "" || c.CallID == "" {
		g.c.violation("%s from %s lacks sender_session_id, seq, org.matrix.msgid or call_id", m.Type, m.Sender)
	}
	if c.DestSessionID != session || !entered {
		// js-sdk ignores it; after a reload this is normal for messages already on their way.
		g.log.Debug().Str("type", m.Type).Str("dest_session_id", c.DestSessionID).Msg("Ignoring a message for another session")
		return
	}
	key := devKey{m.Sender, id.DeviceID(c.DeviceID)}
	g.mu.Lock()
	call := g.calls[key]
	if call != nil && call.callID != c.CallID {
		call = nil
	}
	g.mu.Unlock()
	switch m.Type {
	case "m.call.invite":
		g.onInvite(key, c.CallID, c.SenderSessionID, m)
	case "m.call.candidates":
		if call == nil {
			g.mu.Lock()
			g.early[c.CallID] = append(g.early[c.CallID], m)
			g.mu.Unlock()
			return
		}
		call.onEvent(m)
	default:
		if call != nil {
			call.onEvent(m)
		}
	}
}

func (g *Group) onInvite(key devKey, callID, senderSession string, m Received) {
	parts := g.participants()
	if _, ok := parts[key]; !ok {
		// js-sdk answers with its tracks disabled: the caller receives silence and black.
		g.c.violation("invite from %s, which has no member entry in the call (js-sdk would answer with disabled tracks)", key)
	}
	g.mu.Lock()
	if !g.entered {
		g.mu.Unlock()
		return
	}
	prev := g.calls[key]
	if prev != nil && prev.callID == callID {
		g.mu.Unlock()
		return
	}
	call := g.newCall(key, callID, false, senderSession)
	call.encrypt = m.Encrypted || !g.c.plain
	if g.c.plain {
		call.encrypt = false
	}
	g.calls[key] = call
	early := g.early[callID]
	delete(g.early, callID)
	g.mu.Unlock()
	if prev != nil {
		go prev.Hangup(context.Background(), "replaced")
	}
	go call.answer(m, early)
}

// Call returns the current call with a device of user (the first found), or nil.
func (g *Group) Call(user id.UserID) *Call {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, call := range g.calls {
		if k.user == user {
			return call
		}
	}
	return nil
}

// WaitConnected waits until the call with user's device has media flowing and returns when
// it first connected.
func (g *Group) WaitConnected(ctx context.Context, user id.UserID) (time.Time, error) {
	for {
		if call := g.Call(user); call != nil {
			if t := call.ConnectedAt(); !t.IsZero() {
				return t, nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for a connection with %s: %w", user, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Calls returns the current calls.
func (g *Group) Calls() []*Call {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Call, 0, len(g.calls))
	for _, c := range g.calls {
		out = append(out, c)
	}
	return out
}

// Blocked counts messages js-sdk's seq ordering would never deliver (a gap in seq).
func (g *Group) Blocked() int { return g.reorder.blocked() }

// MediaStartedAt is when the current local media started sending.
func (g *Group) MediaStartedAt() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.media == nil {
		return time.Time{}
	}
	return g.media.startedAt
}

// Click schedules a loud burst in the click audio at wall-clock time at.
func (g *Group) Click(at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.media != nil && g.media.clicker != nil {
		g.media.clicker.click(at)
	}
}

// StartScreenshare adds a screenshare stream to every call (js-sdk setScreensharingEnabled)
// and announces it in the member entry.
func (g *Group) StartScreenshare(ctx context.Context, asset string) error {
	lt, err := newLocalTrack(asset, "screenshare-"+randomID(6), "screenshare")
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.screen = lt
	calls := make([]*Call, 0, len(g.calls))
	for _, c := range g.calls {
		calls = append(calls, c)
	}
	g.mu.Unlock()
	lt.start()
	var errs []error
	for _, call := range calls {
		if err := call.addScreenshare(ctx, lt); err != nil {
			errs = append(errs, fmt.Errorf("screenshare to %s: %w", call.remote, err))
		}
	}
	errs = append(errs, g.publish(ctx))
	return errors.Join(errs...)
}

// StopScreenshare removes the screenshare from every call.
func (g *Group) StopScreenshare(ctx context.Context) error {
	g.mu.Lock()
	lt := g.screen
	g.screen = nil
	calls := make([]*Call, 0, len(g.calls))
	for _, c := range g.calls {
		calls = append(calls, c)
	}
	g.mu.Unlock()
	if lt == nil {
		return errors.New("not screensharing")
	}
	var errs []error
	for _, call := range calls {
		if err := call.removeScreenshare(ctx, lt); err != nil {
			errs = append(errs, fmt.Errorf("stop screenshare to %s: %w", call.remote, err))
		}
	}
	lt.stop()
	errs = append(errs, g.publish(ctx))
	return errors.Join(errs...)
}

// jsReorder is js-sdk's CallEventHandler.onToDeviceEvent, quirks included: per call_id the
// expected seq starts at 0; a message with another seq is buffered; the expected one is
// delivered with the buffered ones that follow.
type jsReorder struct {
	mu      sync.Mutex
	next    map[string]int64
	buffers map[string][]Received
	lost    int
}

func newJSReorder() *jsReorder {
	return &jsReorder{next: map[string]int64{}, buffers: map[string][]Received{}}
}

func (r *jsReorder) push(m Received) []Received {
	var c struct {
		CallID string `json:"call_id"`
		Seq    *int64 `json:"seq"`
	}
	_ = json.Unmarshal(m.Content, &c)
	if c.CallID == "" || c.Seq == nil {
		return []Received{m}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.next[c.CallID]
	if *c.Seq != next {
		buf := r.buffers[c.CallID]
		i := sort.Search(len(buf), func(i int) bool { return seqOf(buf[i]) > *c.Seq })
		buf = append(buf, Received{})
		copy(buf[i+1:], buf[i:])
		buf[i] = m
		r.buffers[c.CallID] = buf
		return nil
	}
	out := []Received{m}
	r.next[c.CallID] = *c.Seq + 1
	buf := r.buffers[c.CallID]
	for len(buf) > 0 {
		n := buf[0]
		buf = buf[1:]
		if seqOf(n) != r.next[c.CallID] {
			r.lost++ // js-sdk shifts it out of the buffer and drops it
			break
		}
		out = append(out, n)
		r.next[c.CallID]++
	}
	r.buffers[c.CallID] = buf
	return out
}

func (r *jsReorder) blocked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.lost
	for _, b := range r.buffers {
		n += len(b)
	}
	return n
}

func seqOf(m Received) int64 {
	var c struct {
		Seq int64 `json:"seq"`
	}
	_ = json.Unmarshal(m.Content, &c)
	return c.Seq
}

// SwitchMicrophone feeds the audio track from another source, as a browser does when the
// user picks another input device (js-sdk replaceTrack): the RTP stream goes on with the
// same SSRC and sequence numbers, its timestamps jump by the time the switch took.
func (g *Group) SwitchMicrophone(asset string) error {
	g.mu.Lock()
	media := g.media
	g.mu.Unlock()
	if media == nil || media.audio == nil {
		return errors.New("no microphone")
	}
	return media.audio.switchSource(asset)
}

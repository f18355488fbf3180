package integration

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/devhs"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// TestIntegrationBrowserMatrixRTC: every caller is the code Element Call runs, in its own
// headless Chromium: matrix-js-sdk 43's MatrixRTCSession joins the room's call
// (joinRTCSession, its own MembershipManager, RTCEncryptionManager and to-device key
// transport over the SDK's rust crypto) and livekit-client publishes the fake camera and a
// tone as microphone with end-to-end encryption (its own E2EE worker), keyed by the
// session's EncryptionKeyChanged events, with a token from the JWT service's /sfu/get as
// Element Call's compatibility mode asks for it. Nothing of the Matrix or LiveKit side of a
// caller is ours, and the bot is its binary (matrix-recorder -config FILE): the bot's files
// decode to each caller's own tone and picture only if the bot took part in the call as
// the real session expects (a membership it accepts, so that it sends the bot its keys)
// and decrypted what the real encryptor wrote.
//
//   - EncryptedGroupCall: two callers in an encrypted room, "!start", "!stop".
//   - KeyRotationOnLeave: one caller hangs up mid-recording; the session of the other rotates
//     its key (new index, sent to the remaining members, used a second later); the
//     recording must stay decryptable after it.
//   - EncryptedDMRing: an Element X style call in an encrypted DM: the session rings the
//     room (org.matrix.msc4075.rtc.notification, "ring"); the bot should join and record
//     with nobody typing a command.
//   - EncryptedDMAudioCall: the same as a voice call (m.call.intent "audio", microphone
//     only): audio files only.
func TestIntegrationBrowserMatrixRTC(t *testing.T) {
	requireBrowser(t, "rtcsession.html")
	env := startLKEnv(t)
	t.Run("EncryptedGroupCall", func(t *testing.T) { browserRTCGroup(t, env, false) })
	t.Run("KeyRotationOnLeave", func(t *testing.T) { browserRTCGroup(t, env, true) })
	t.Run("EncryptedDMRing", func(t *testing.T) { browserRTCRing(t, env, "video") })
	t.Run("EncryptedDMAudioCall", func(t *testing.T) { browserRTCRing(t, env, "audio") })
}

// rtcStatus is what the page's session and LiveKit room say (rtcsession.js status()).
type rtcStatus struct {
	InCall           bool             `json:"inCall"`
	Joined           bool             `json:"joined"`
	MembershipStatus string           `json:"membershipStatus"`
	State            string           `json:"state"`
	Identity         string           `json:"identity"`
	LKRoom           string           `json:"lkRoom"`
	E2EE             bool             `json:"e2ee"`
	Publications     []lkPublication  `json:"publications"`
	Memberships      []rtcMember      `json:"memberships"`
	Participants     []rtcParticipant `json:"participants"`
	Keys             []rtcKey         `json:"keys"`
	Notifications    []map[string]any `json:"notifications"`
	SessionErrors    []string         `json:"sessionErrors"`
	EncryptionErrors []rtcCryptError  `json:"encryptionErrors"`
	States           []string         `json:"states"`
}

// rtcMember is one membership the session accepts as valid.
type rtcMember struct {
	UserID   string `json:"userId"`
	DeviceID string `json:"deviceId"`
	MemberID string `json:"memberId"`
	// Identity is the LiveKit identity the session expects of the member
	// (rtcBackendIdentity), the one its keys are set for.
	Identity string `json:"identity"`
	EventID  string `json:"eventId"`
}

// rtcCryptError is an EncryptionError of livekit-client's E2EE worker; Reason is the
// CryptorErrorReason it names ("MissingKey", "InvalidKey", "InternalError").
type rtcCryptError struct {
	Identity string `json:"identity"`
	Reason   string `json:"reason"`
	Message  string `json:"message"`
}

// sdkErrors lists what the caller's SDKs reported, leaving out frames that came before
// their key (MissingKey): Element Call sees those whenever media is faster than the
// to-device key.
func (s rtcStatus) sdkErrors() []string {
	out := append([]string(nil), s.SessionErrors...)
	for _, e := range s.EncryptionErrors {
		if e.Reason != "MissingKey" {
			out = append(out, fmt.Sprintf("E2EE worker, %s: %s", e.Identity, e.Message))
		}
	}
	return out
}

// rtcParticipant is a remote participant of the page's LiveKit room.
type rtcParticipant struct {
	Identity string   `json:"identity"`
	Tracks   []string `json:"tracks"`
}

// rtcKey is a media key the session handed to the media layer.
type rtcKey struct {
	UserID   string `json:"userId"`
	DeviceID string `json:"deviceId"`
	Index    int    `json:"index"`
	Identity string `json:"identity"`
	Own      bool   `json:"own"`
	At       int64  `json:"at"`
}

func (s rtcStatus) member(user string) (rtcMember, bool) {
	for _, m := range s.Memberships {
		if m.UserID == user {
			return m, true
		}
	}
	return rtcMember{}, false
}

// ownKeyIndex is the index of the latest own key the session set (-1 before the first).
func (s rtcStatus) ownKeyIndex() int {
	idx := -1
	for _, k := range s.Keys {
		if k.Own {
			idx = k.Index
		}
	}
	return idx
}

// hasKeyFrom says whether the session received a key of user's.
func (s rtcStatus) hasKeyFrom(user string) bool {
	return slices.ContainsFunc(s.Keys, func(k rtcKey) bool { return !k.Own && k.UserID == user })
}

// participant returns the remote LiveKit participant with identity.
func (s rtcStatus) participant(identity string) (rtcParticipant, bool) {
	for _, p := range s.Participants {
		if p.Identity == identity {
			return p, true
		}
	}
	return rtcParticipant{}, false
}

// rtcCaller is one Element Call participant in its own browser.
type rtcCaller struct {
	t      *testing.T
	page   *browserPage
	acc    devhs.Account
	user   string
	device string
	hz     float64
}

// newRTCCaller registers a user, opens the page in a browser whose fake microphone plays a
// tone of hz, and logs the user in there (a new device with the SDK's rust crypto).
func newRTCCaller(t *testing.T, env *lkEnv, name string, hz int) *rtcCaller {
	t.Helper()
	page := startBrowser(t, "rtcsession.html", "--use-file-for-fake-audio-capture="+toneWAV(t, hz))
	ctx := timeout(t, 2*time.Minute)
	local := uniq(name)
	acc, err := env.hs.Register(ctx, local, "pw-"+local)
	if err != nil {
		t.Fatalf("register %s: %v", local, err)
	}
	var me struct {
		UserID   string `json:"userId"`
		DeviceID string `json:"deviceId"`
	}
	page.must(ctx, &me, "login", map[string]any{"homeserver": env.hs.URL(), "user": local, "password": "pw-" + local})
	return &rtcCaller{t: t, page: page, acc: acc, user: me.UserID, device: me.DeviceID, hz: float64(hz)}
}

// waitRoom waits until the caller's client sees everyone of members joined in room and, when
// encrypted, treats the room as encrypted.
func (c *rtcCaller) waitRoom(room string, encrypted bool, members ...string) {
	c.t.Helper()
	type roomView struct {
		Joined    []string `json:"joined"`
		Encrypted bool     `json:"encrypted"`
	}
	_, err := waitPage(timeout(c.t, 90*time.Second), c.page, "the room as "+c.user+"'s client sees it", func(v roomView) bool {
		for _, m := range members {
			if !slices.Contains(v.Joined, m) {
				return false
			}
		}
		return v.Encrypted == encrypted
	}, "room", room)
	if err != nil {
		c.t.Fatal(err)
	}
}

// join joins the room's call through the session and LiveKit, and waits until the SDK
// publishes its tracks encrypted.
func (c *rtcCaller) join(room, serviceURL string, opts map[string]any) rtcStatus {
	c.t.Helper()
	args := map[string]any{"roomId": room, "serviceUrl": serviceURL, "rawAudio": true}
	for k, v := range opts {
		args[k] = v
	}
	var st rtcStatus
	c.page.must(timeout(c.t, 2*time.Minute), &st, "joinCall", args)
	if want := c.user + ":" + c.device; st.Identity != want || !st.E2EE {
		c.t.Fatalf("%s is in LiveKit as %q (E2EE %v), want %q with E2EE (what its state-event membership announces)", c.user, st.Identity, st.E2EE, want)
	}
	tracks := 2
	if opts["callIntent"] == "audio" {
		tracks = 1
	}
	st, err := waitPage(timeout(c.t, time.Minute), c.page, c.user+"'s tracks published", func(s rtcStatus) bool {
		return len(s.Publications) == tracks
	}, "status")
	if err != nil {
		c.t.Fatal(err)
	}
	for _, p := range st.Publications {
		if p.Encryption == 0 {
			c.t.Errorf("%s's SDK published %s unencrypted: %+v", c.user, p.Source, p)
		}
	}
	c.t.Logf("%s (%s) is in the call, LiveKit room %s: %+v", c.user, c.device, st.LKRoom, st.Publications)
	return st
}

func (c *rtcCaller) status() rtcStatus {
	c.t.Helper()
	var st rtcStatus
	c.page.must(timeout(c.t, 30*time.Second), &st, "status")
	return st
}

// waitStatus polls the caller's status until ok.
func (c *rtcCaller) waitStatus(what string, d time.Duration, ok func(rtcStatus) bool) rtcStatus {
	c.t.Helper()
	st, err := waitPage(timeout(c.t, d), c.page, what, ok, "status")
	if err != nil {
		c.t.Fatal(err)
	}
	return st
}

// say sends text to room from the caller's client (encrypted where the room is).
func (c *rtcCaller) say(room, text string) {
	c.t.Helper()
	c.page.must(timeout(c.t, 30*time.Second), nil, "sendText", room, text)
}

// waitNotice waits for a notice of the bot's containing sub, as the caller's client decrypts it.
func (c *rtcCaller) waitNotice(room, sub string, d time.Duration) string {
	c.t.Helper()
	n, err := waitPage(timeout(c.t, d), c.page, "a notice with "+fmt.Sprintf("%q", sub), func(n jsNotices) bool { return n.has(sub) }, "notices", room)
	if err != nil {
		c.t.Fatal(err)
	}
	return n.find(sub)
}

// undecryptableFrom lists the events of sender the client could not decrypt.
func (n jsNotices) undecryptableFrom(sender string) []string {
	var out []string
	for _, u := range n.Undecryptable {
		if strings.Contains(u, " from "+sender+":") {
			out = append(out, u)
		}
	}
	return out
}

// startRTCBot runs the bot's binary (matrix-recorder -config FILE) with an account of its
// own on the test homeserver, and returns its config. Calls are answered by themselves
// (calls.auto_answer, the default): the group calls here have two callers, so only the DM
// calls are answered.
func startRTCBot(t *testing.T, env *lkEnv) config.Config {
	t.Helper()
	cfg := env.botConfig(t)
	cfg.Calls.AutoAnswer = true
	startProcess(t, cfg)
	return cfg
}

// createCallRoom creates a room of owner's as Element does where Element Call runs (members
// may send call membership state), with others invited and joined.
func createCallRoom(ctx context.Context, t *testing.T, s *devhs.Server, owner devhs.Account, encrypted bool, others ...devhs.Account) string {
	t.Helper()
	invitees := []string{}
	for _, o := range others {
		invitees = append(invitees, o.UserID)
	}
	req := map[string]any{
		"preset":                       "private_chat",
		"invite":                       invitees,
		"power_level_content_override": map[string]any{"events": map[string]int{"org.matrix.msc3401.call.member": 0}},
	}
	if encrypted {
		req["initial_state"] = []map[string]any{{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}
	}
	var resp struct {
		RoomID string `json:"room_id"`
	}
	if err := s.Do(ctx, owner, "POST", "/_matrix/client/v3/createRoom", req, &resp); err != nil {
		t.Fatalf("create the call room: %v", err)
	}
	for _, o := range others {
		if err := s.Do(ctx, o, "POST", "/_matrix/client/v3/join/"+url.PathEscape(resp.RoomID), map[string]any{}, nil); err != nil {
			t.Fatalf("%s joins the call room: %v", o.UserID, err)
		}
	}
	return resp.RoomID
}

// invite invites user to room on behalf of acc.
func invite(ctx context.Context, t *testing.T, s *devhs.Server, acc devhs.Account, room, user string) {
	t.Helper()
	if err := s.Do(ctx, acc, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/invite", map[string]any{"user_id": user}, nil); err != nil {
		t.Fatalf("invite %s: %v", user, err)
	}
}

// browserRTCGroup: alice (440 Hz) and bob (660 Hz) join an encrypted room's call; alice
// types !start, and !stop some seconds later. With leave, bob hangs up in between and
// alice's session must rotate her key, which the bot must follow.
func browserRTCGroup(t *testing.T, env *lkEnv, leave bool) {
	cfg := startRTCBot(t, env)
	bot := cfg.Matrix.UserID
	alice := newRTCCaller(t, env, "alice", 440)
	bob := newRTCCaller(t, env, "bob", 660)
	// The people first, then the bot, each step seen by both clients. Seen once when the
	// bot joined at the moment bob did: bob's client never learnt of the bot's join, which
	// came with bob's own invite->join in a sync Dendrite marked limited (matrix-js-sdk:
	// "Already have event ... in limited sync - not resetting"), so its session would not
	// count the bot as a member.
	room := createCallRoom(timeout(t, time.Minute), t, env.hs, alice.acc, true, bob.acc)
	callers := []*rtcCaller{alice, bob}
	for _, c := range callers {
		c.waitRoom(room, true, alice.user, bob.user)
	}
	invite(timeout(t, time.Minute), t, env.hs, alice.acc, room, bot)
	for _, c := range callers {
		c.waitRoom(room, true, alice.user, bob.user, bot)
	}
	for _, c := range callers {
		c.join(room, env.jwt.URL(), nil)
	}
	// The two sessions see each other, exchanged keys, and each SDK receives the other's
	// tracks: the call works between the real clients before the bot comes.
	for _, pair := range [][2]*rtcCaller{{alice, bob}, {bob, alice}} {
		c, other := pair[0], pair[1]
		c.waitStatus(c.user+" sees "+other.user+" in the call, with a key and both tracks", 90*time.Second, func(s rtcStatus) bool {
			_, member := s.member(other.user)
			p, ok := s.participant(other.user + ":" + other.device)
			return member && s.hasKeyFrom(other.user) && ok && len(p.Tracks) == 2
		})
	}

	alice.say(room, "!start")
	alice.waitNotice(room, "Recording started", 90*time.Second)
	// The bot's membership, as the sessions judge it: valid, so their keys go to its device;
	// and the bot in the SFU's room (the one participant that is neither caller).
	var botMember rtcMember
	for _, c := range callers {
		st := c.waitStatus(c.user+"'s session to count the bot as a member", time.Minute, func(s rtcStatus) bool {
			_, ok := s.member(bot)
			return ok
		})
		botMember, _ = st.member(bot)
	}
	during := alice.waitStatus("the bot in the LiveKit room", time.Minute, func(s rtcStatus) bool { return len(s.Participants) == 2 })
	t.Logf("the bot's membership as the SDK reads it: %+v; LiveKit participants alice sees: %+v", botMember, during.Participants)

	var bobLeft time.Time
	if !leave {
		time.Sleep(8 * time.Second)
	} else {
		time.Sleep(4 * time.Second)
		before := alice.status().ownKeyIndex()
		var left bool
		bob.page.must(timeout(t, time.Minute), &left, "leaveCall")
		bobLeft = time.Now()
		if !left {
			t.Errorf("bob's session says his membership was not removed")
		}
		// Alice's session rotates when a member leaves: a new index to the remaining
		// members (the bot), used a second later (when the page sees it).
		st := alice.waitStatus("alice's session to rotate her key after bob left", time.Minute, func(s rtcStatus) bool {
			_, bobThere := s.member(bob.user)
			return !bobThere && s.ownKeyIndex() > before
		})
		t.Logf("alice's key went from index %d to %d after bob left", before, st.ownKeyIndex())
		time.Sleep(6 * time.Second)
	}
	for _, c := range callers {
		if errs := c.status().sdkErrors(); len(errs) > 0 {
			t.Errorf("%s's SDKs reported errors: %v", c.user, errs)
		}
	}
	alice.say(room, "!stop")
	stoppedAt := time.Now()
	summary := alice.waitNotice(room, "Recording saved", 90*time.Second)
	t.Logf("summary: %s", summary)
	folder, m := finishedFolderIn(t, cfg.Recordings.Dir)
	keepOnFailure(t, folder)
	t.Logf("files:\n%s", describe(m))
	if m.Kind != "livekit" {
		t.Fatalf("recorded by the %q backend, want livekit", m.Kind)
	}

	recorded := stoppedAt.Sub(m.StartedAt)
	for _, c := range callers {
		other := 660.0
		if c.hz == 660 {
			other = 440
		}
		mic := fileOf(t, m, id.UserID(c.user), recorder.SourceMicrophone)
		cam := fileOf(t, m, id.UserID(c.user), recorder.SourceCamera)
		for _, f := range []recorder.FileEntry{mic, cam} {
			if f.DeviceID != c.device {
				t.Errorf("%s is filed under device %q, the browser's is %s", f.File, f.DeviceID, c.device)
			}
			if f.Stats.FramesUndecrypted != 0 {
				t.Errorf("%s: %d frames the bot could not decrypt", f.File, f.Stats.FramesUndecrypted)
			}
			// Every caller's files run from the start of the recording to when the caller
			// left it (bob) or to the !stop: nothing was held back for want of a key.
			end := recorded
			if c == bob && leave {
				end = bobLeft.Sub(m.StartedAt)
			}
			got := time.Duration(f.StartOffsetMs+f.DurationMs) * time.Millisecond
			if f.StartOffsetMs > 3000 || got < end-2*time.Second || got > end+3*time.Second {
				t.Errorf("%s runs from %v to %v of the recording, want from its start to about %v", f.File,
					time.Duration(f.StartOffsetMs)*time.Millisecond, got, end)
			}
		}
		checkAudio(t, folder, mic, c.hz, other)
		checkFile(t, filepath.Join(folder, cam.File), "vp8", time.Duration(cam.DurationMs)*time.Millisecond)
		checkFakeCamera(t, filepath.Join(folder, cam.File))
	}
	if leave {
		return
	}

	// Everyone in the call is told that it is recorded, and what was saved: every caller's
	// client must read every notice of the bot's, from its greeting to the summary.
	t.Run("EveryCallerReadsTheNotices", func(t *testing.T) {
		for _, c := range callers {
			n, err := waitPage(timeout(t, 30*time.Second), c.page, c.user+"'s client to read all the bot's notices", func(n jsNotices) bool {
				return n.has("Recording started") && n.has("Recording saved") && len(n.undecryptableFrom(bot)) == 0
			}, "notices", room)
			if err != nil {
				t.Errorf("%v (undecryptable events of the bot's: %v)", err, n.undecryptableFrom(bot))
			}
		}
	})
	// Element Call pairs a membership with the LiveKit participant whose identity is the
	// membership's rtcBackendIdentity ("@user:server:DEVICE" for a state-event membership):
	// the bot's own must be there, or clients show it as a member that never connects.
	t.Run("BotLiveKitIdentityMatchesItsMembership", func(t *testing.T) {
		if _, ok := during.participant(botMember.Identity); !ok {
			t.Errorf("the SDK expects the bot in LiveKit as %q (its membership), but the participants are %+v", botMember.Identity, during.Participants)
		}
	})
}

// browserRTCRing: an Element X style DM call to the bot. Alice's session joins the call of
// an encrypted DM with the bot and rings the room as the call's first member
// (org.matrix.msc4075.rtc.notification, notification_type "ring", referencing her
// membership). The bot should answer by joining the session and record her tracks as plain
// media with nobody typing a command, tell the room, and end the recording when she hangs
// up (a DM call ends with its caller, not after the group grace period). intent is the
// call's ("audio": the page publishes its microphone only, and the files are audio only).
func browserRTCRing(t *testing.T, env *lkEnv, intent string) {
	cfg := startRTCBot(t, env)
	bot := cfg.Matrix.UserID
	alice := newRTCCaller(t, env, "alice", 440)
	room := createDMOverAPI(timeout(t, time.Minute), t, env.hs, alice.acc, bot, true)
	alice.waitRoom(room, true, alice.user, bot)

	st := alice.join(room, env.jwt.URL(), map[string]any{"notificationType": "ring", "callIntent": intent})
	st = alice.waitStatus("the session to ring the room", time.Minute, func(s rtcStatus) bool { return len(s.Notifications) > 0 })
	own, ok := st.member(alice.user)
	if !ok {
		t.Fatalf("alice's session does not list her own membership: %+v", st.Memberships)
	}
	n := st.Notifications[0]
	rel, _ := n["m.relates_to"].(map[string]any)
	if n["notification_type"] != "ring" || rel["rel_type"] != "m.reference" || rel["event_id"] != own.EventID || n["m.call.intent"] != intent {
		t.Fatalf("the session's ring notification is not what the test expects of matrix-js-sdk 43: %v (membership %s)", n, own.EventID)
	}
	t.Logf("the session rang the room: %v", n)

	// The bot answers: its membership joins the session, and it tells the room.
	alice.waitStatus("the bot to join the call", 90*time.Second, func(s rtcStatus) bool {
		_, ok := s.member(bot)
		return ok
	})
	alice.waitNotice(room, "Recording", time.Minute)
	time.Sleep(8 * time.Second)
	if errs := alice.status().sdkErrors(); len(errs) > 0 {
		t.Errorf("alice's SDKs reported errors: %v", errs)
	}
	var left bool
	alice.page.must(timeout(t, time.Minute), &left, "leaveCall")
	leftAt := time.Now()
	summary := alice.waitNotice(room, "Recording saved", 90*time.Second)
	t.Logf("summary: %s", summary)
	folder, m := finishedFolderIn(t, cfg.Recordings.Dir)
	keepOnFailure(t, folder)
	t.Logf("files:\n%s", describe(m))
	if m.Kind != recorder.KindDirect || m.EndedAt == nil {
		t.Fatalf("manifest header: kind %q, ended %v", m.Kind, m.EndedAt)
	}
	if d := m.EndedAt.Sub(leftAt); d > 10*time.Second {
		t.Errorf("the recording ended %v after the caller hung up; a DM call ends with its caller", d.Round(time.Second))
	}
	mic := fileOf(t, m, id.UserID(alice.user), recorder.SourceMicrophone)
	files := []recorder.FileEntry{mic}
	if intent == "audio" {
		if len(m.Tracks) != 1 {
			t.Errorf("an audio call's recording has %d files, want the microphone only", len(m.Tracks))
		}
	} else {
		files = append(files, fileOf(t, m, id.UserID(alice.user), recorder.SourceCamera))
	}
	for _, f := range files {
		if f.DeviceID != alice.device || f.Stats.FramesUndecrypted != 0 {
			t.Errorf("%s: device %q (browser %s), %d undecryptable frames", f.File, f.DeviceID, alice.device, f.Stats.FramesUndecrypted)
		}
	}
	checkAudio(t, folder, mic, 440, 660)
	if intent != "audio" {
		cam := files[1]
		checkFile(t, filepath.Join(folder, cam.File), "vp8", time.Duration(cam.DurationMs)*time.Millisecond)
		checkFakeCamera(t, filepath.Join(folder, cam.File))
	}
}

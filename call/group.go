package call

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// Matrix is what a call backend may do on Matrix. The bot implements it: messages are
// encrypted in encrypted rooms, to-device messages with Olm when asked.
type Matrix interface {
	UserID() id.UserID
	DeviceID() id.DeviceID
	// SendMessage sends a room event (encrypted if the room is).
	SendMessage(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) (id.EventID, error)
	// SendState sets a state event.
	SendState(ctx context.Context, roomID id.RoomID, evtType event.Type, stateKey string, content any) error
	// SendToDevice sends one message per device; with encrypt, each is Olm-encrypted
	// (devices without keys are skipped and reported in the error).
	SendToDevice(ctx context.Context, evtType event.Type, messages map[id.UserID]map[id.DeviceID]any, encrypt bool) error
	// State returns the room's current state from the homeserver.
	State(ctx context.Context, roomID id.RoomID) (mautrix.RoomStateMap, error)
	// JoinedMembers returns the joined members and their display names.
	JoinedMembers(ctx context.Context, roomID id.RoomID) (map[id.UserID]string, error)
	// IsEncrypted reports whether the room is end-to-end encrypted.
	IsEncrypted(ctx context.Context, roomID id.RoomID) bool
	// ICEServers returns STUN/TURN servers for a new peer connection.
	ICEServers(ctx context.Context) []webrtc.ICEServer
	// OpenIDToken asks the homeserver for an OpenID token (MatrixRTC JWT services).
	OpenIDToken(ctx context.Context) (*mautrix.RespOpenIDToken, error)
	// Notice posts a notice; mentions are pinged.
	Notice(ctx context.Context, roomID id.RoomID, text string, mentions ...id.UserID) id.EventID
}

// Backend records one kind of call (legacy 1:1, full mesh, MatrixRTC over LiveKit,
// LiveKit Egress). The bot asks every backend whether it can record a room's call and
// starts the best one on !start; those that answer calls that ring the bot (Answerer)
// start when a call rings and the bot answers it.
type Backend interface {
	// Name is a short lower-case name for logs and !status ("1:1", "mesh", "livekit", "egress");
	// the kind of call its recordings are is recorder.Kind.
	Name() string
	// Probe tells whether this backend can record a call in the room right now.
	Probe(ctx context.Context, roomID id.RoomID, args []string) Probe
	// Start begins recording.
	Start(ctx context.Context, req StartRequest) (Recording, error)
	EventHandler
	// Close stops the backend's own work (not recordings, which the bot stops first).
	Close(ctx context.Context) error
}

// EventHandler is how every backend hears from Matrix.
type EventHandler interface {
	// HandleEvent gets every event the bot sees: room state and timeline events (decrypted),
	// and to-device events (plain, and Olm-decrypted with Mautrix.EventSource including
	// event.SourceDecrypted). It must return quickly.
	HandleEvent(ctx context.Context, evt *event.Event)
}

// Probe is a backend's answer to "can you record this room?".
type Probe struct {
	// OK: there is a call this backend can record.
	OK bool
	// Priority orders backends that can all record (higher wins).
	Priority int
	// Reason explains, for the room, why not (or what was found).
	Reason string
}

// StartRequest asks a backend to record a room.
type StartRequest struct {
	RoomID id.RoomID
	// By is who asked.
	By id.UserID
	// Args are the words after the command.
	Args []string
	// OptedOut lists users who asked not to be recorded in this room, and since when.
	OptedOut map[id.UserID]time.Time
	// Resume, when set, is the call folder of a recording a restart interrupted: the
	// recording continues in it. The bot also puts it in ctx (recorder.WithResume), so a
	// backend that passes its Start context to recorder.Start needs to do nothing more.
	Resume string
	// Answer, when set, makes this the recording of a direct call the bot answers (a DM
	// call that rang it, or that the other person started): it ends as soon as the caller
	// leaves the call, not after a grace time. Only backends that answer calls look at it
	// (Answerer: onetoone, livekit).
	Answer *Answer
}

// Answer describes a direct call the bot answers.
type Answer struct {
	// Kind is the kind of call that rang (recorder.KindDirect when unset: a MatrixRTC
	// call); it picks the backend that answers it (Answerer).
	Kind recorder.Kind
	// Caller is the other person in the direct room, who started the call.
	Caller id.UserID
	// Ring is the call notification that rang the bot, if any: when it was declined or
	// expired before the bot joined, the call is not recorded. For a legacy 1:1 call it is
	// the invite.
	Ring id.EventID
	// CallID is the call's own id where the kind of call has one (a legacy call's call_id).
	CallID string
	// Intent is the caller's m.call.intent when known ("audio": no video is recorded).
	Intent string
	// Replace: a new call of the caller replaces the answered call of theirs that is
	// being recorded in the room (their client gave up on it), instead of being a second
	// ring of the same call.
	Replace bool
}

// KindOf is the kind of call ans is of.
func (ans Answer) KindOf() recorder.Kind {
	if ans.Kind == recorder.KindUnknown {
		return recorder.KindDirect
	}
	return ans.Kind
}

// Answerer is a Backend that answers direct calls that ring the bot (Start with an
// Answer), rather than recording calls on !start.
type Answerer interface {
	Backend
	// Answers is the kind of call it answers.
	Answers() recorder.Kind
	// Decline refuses a call that rang, so the caller's client stops ringing; a call that
	// is over already is left alone.
	Decline(ctx context.Context, roomID id.RoomID, ans Answer) error
}

// SyncBatcher is a Backend that wants to know where a sync response begins and ends: it
// handles the events of one response together, once they are all decrypted.
type SyncBatcher interface {
	BeginSync()
	EndSync(ctx context.Context)
}

// ErrNotAnswered: the call rang but is not to be answered any more (declined, expired,
// hung up, answered elsewhere); nothing is said in the room.
var ErrNotAnswered = errors.New("the call is not to be answered")

// Recording is one running recording.
type Recording interface {
	// Status is a snapshot for !status and notices.
	Status() Status
	// Stop ends the recording, finalises every file and returns the manifest.
	Stop(ctx context.Context, reason string) (recorder.Manifest, error)
	// SetOptOut stops (true) or resumes (false) recording a user.
	SetOptOut(ctx context.Context, user id.UserID, optOut bool)
	// Mark adds a note on the timeline.
	Mark(user id.UserID, text string, at time.Time)
	// Done is closed when the recording ended on its own (the call ended, everyone left).
	Done() <-chan struct{}
	// Result returns the final manifest and why the recording ended, once Done is closed.
	Result() (recorder.Manifest, string, error)
}

// Pauser is a Recording that can pause for a planned restart of the recorder instead of
// ending: it leaves the call as Stop does (the bot's membership taken back, so clients see
// it leave, and send it their keys again when it rejoins), but its folder stays resumable
// (recorder.Session.Pause) with what a resume needs, so the next start (or another
// recorder that shares the state) continues it in new parts (StartRequest.Resume). The
// manifest it returns says interrupted when it paused, finished when the recording had
// ended already. The bot stops recordings that cannot pause.
type Pauser interface {
	Pause(ctx context.Context, reason string) (recorder.Manifest, error)
}

// Status describes a running recording.
type Status struct {
	Backend      string
	RoomID       id.RoomID
	StartedAt    time.Time
	Folder       string
	Participants []ParticipantStatus
	Tracks       int
	Bytes        int64
	// Details are extra lines for !status (the egresses of an Egress recording).
	Details []string
	// State is where the call stands: every backend says it, the ones the bot joins
	// by RecordingState's rule, 1:1 calls by their peer's.
	State State
}

// ParticipantStatus is one participant of a running recording.
type ParticipantStatus struct {
	UserID   id.UserID
	DeviceID id.DeviceID
	Tracks   int
	OptedOut bool
	// DisplayName, when set, names someone who is not a Matrix user (a La Suite Meet
	// participant recorded with Egress: UserID is then their LiveKit identity).
	DisplayName string
}

// RawContent returns an event's content as sent, for backends that parse their own types.
func RawContent(evt *event.Event) json.RawMessage {
	if len(evt.Content.VeryRaw) > 0 {
		return evt.Content.VeryRaw
	}
	b, _ := json.Marshal(evt.Content.Raw)
	return b
}

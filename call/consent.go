package call

import (
	"context"
	"fmt"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
)

// Joiners tells the room about people who join a call while it is being recorded: once per
// person and recording, with a mention, and how to opt out (the start notice names those
// who were there at the start: Seen). Every backend uses it, so nobody is recorded
// without being told, whichever kind of call it is. Safe for concurrent use.
type Joiners struct {
	ctx  context.Context
	mx   Matrix
	room id.RoomID
	// prefix is the command prefix ("!"); composite: the recording mixes everyone, so
	// nobody can opt out of it.
	prefix    string
	composite bool

	mu   sync.Mutex
	told map[id.UserID]bool
}

// NewJoiners returns the notices of one recording in room (a notice under way is sent
// even when ctx ends with the recording).
// composite says the recording mixes everyone into one (LiveKit Egress' room composite),
// so the notice does not offer an opt-out.
func NewJoiners(ctx context.Context, mx Matrix, room id.RoomID, prefix string, composite bool) *Joiners {
	return &Joiners{ctx: ctx, mx: mx, room: room, prefix: prefix, composite: composite, told: map[id.UserID]bool{}}
}

// Seen marks people as told without a notice: those in the call when the recording
// started, whom its start notice names.
func (j *Joiners) Seen(users ...id.UserID) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, u := range users {
		j.told[u] = true
	}
}

// Joined tells the room that user joined the recorded call, unless they were told
// already. name, when set, is the display name of someone who is not a Matrix user (a
// La Suite Meet participant): shown instead of user, and not mentioned. optedOut says they
// asked not to be recorded. It reports whether a notice was sent.
func (j *Joiners) Joined(user id.UserID, name string, optedOut bool) bool {
	j.mu.Lock()
	if j.told[user] {
		j.mu.Unlock()
		return false
	}
	j.told[user] = true
	j.mu.Unlock()
	who := string(user)
	var mentions []id.UserID
	if name != "" {
		who = name
	} else {
		mentions = append(mentions, user)
	}
	var text string
	switch {
	case j.composite:
		text = fmt.Sprintf("%s joined the call, which is being recorded (everyone mixed into one recording).", who)
	case optedOut:
		text = fmt.Sprintf("%s joined the call, which is being recorded; you are not recorded, as you asked. Type %srecordme to be recorded.", who, j.prefix)
	default:
		text = fmt.Sprintf("%s joined the call, which is being recorded (every person's tracks as separate files). Type %sskipme not to be recorded.", who, j.prefix)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), noticeTimeout)
		defer cancel()
		j.mx.Notice(ctx, j.room, text, mentions...)
	}()
	return true
}

// noticeTimeout bounds sending one notice.
const noticeTimeout = 30 * time.Second

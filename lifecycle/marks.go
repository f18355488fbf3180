package lifecycle

import (
	"context"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

// The recording mark: while the bot records in a room, its display name there says so
// (bot.recording_displayname), where people in a full-screen call see it; afterwards it is
// the global name again. The lifecycle knows when a room starts and stops being recorded
// (every kind of recording goes through the recorder's hooks) and asks the chat layer for
// the change (Chat.SetRecordingMark). Member events are state: changes are paced per room
// (a recording stopped and started again within markGap is one change, or none) and for
// the whole bot (markPace), and retried with a backoff.
//
// Which rooms may carry the mark is kept in the state database (set before the mark is
// sent, cleared once the plain name is back), so the next start finds the marks a stop
// left: a recording a clean stop paused keeps its mark, and once the start-up resumed what
// it could, the rooms that carry one without a recording get their name back.

// Pacing of the name changes.
const (
	// markGap is the least time between two changes of one room's mark.
	markGap = 10 * time.Second
	// markPace is the least time between two changes in any rooms.
	markPace = 500 * time.Millisecond
	// markRetry is the first pause after a failed change (doubled up to markRetryMax);
	// after markTries failures the change is given up (the next start cleans a mark).
	markRetry    = 5 * time.Second
	markRetryMax = 2 * time.Minute
	markTries    = 6
)

// nameMarks keeps each room's mark in line with whether the bot records there.
type nameMarks struct {
	lc *Lifecycle
	// gap and pace are markGap and markPace (tests shorten them).
	gap, pace time.Duration

	mu sync.Mutex
	// wanted is what each room should show; has what it shows as far as the bot knows.
	wanted map[id.RoomID]bool
	has    map[id.RoomID]*markState
	wake   chan struct{}
	ready  bool // the rooms the last run marked are loaded (Recover)
}

type markState struct {
	on      bool
	changed time.Time // when the last change was sent (zero: a previous run's)
	tries   int       // failed attempts of the pending change
	retryAt time.Time
	sending bool // a change is on its way (run and a shutdown's flush both send)
}

func newNameMarks(lc *Lifecycle) *nameMarks {
	return &nameMarks{lc: lc, gap: markGap, pace: markPace, wanted: map[id.RoomID]bool{}, has: map[id.RoomID]*markState{}, wake: make(chan struct{}, 1)}
}

// enabled reports whether recordings mark the name (cleaning old marks runs regardless).
func (n *nameMarks) enabled() bool { return n.lc.cfg.Bot.RecordingDisplayName }

// want asks for the room's mark to be on or off; it returns at once.
func (n *nameMarks) want(room id.RoomID, on bool) {
	if on && !n.enabled() {
		return
	}
	n.mu.Lock()
	n.wantLocked(room, on)
	n.mu.Unlock()
	n.poke()
}

func (n *nameMarks) wantLocked(room id.RoomID, on bool) {
	if cur, ok := n.wanted[room]; ok && cur == on {
		return
	}
	n.wanted[room] = on
	if st := n.has[room]; st != nil {
		st.tries, st.retryAt = 0, time.Time{}
	}
}

func (n *nameMarks) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// load takes the rooms the last run marked from the database (Recover).
func (n *nameMarks) load(ctx context.Context) {
	rooms, err := n.lc.db.NameMarks(ctx)
	if err != nil {
		n.lc.log.Warn().Err(err).Msg("Could not read the rooms whose display name has the recording mark")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range rooms {
		room := id.RoomID(r)
		if n.has[room] == nil {
			n.has[room] = &markState{on: true}
		}
	}
	n.ready = true
}

// cleanup gives their name back to the rooms that carry a mark without a recording (after
// the start-up resumed what it could).
func (n *nameMarks) cleanup() {
	n.lc.mu.Lock()
	recording := map[id.RoomID]bool{}
	for _, lr := range n.lc.live {
		recording[lr.roomID] = true
	}
	n.lc.mu.Unlock()
	if f := n.lc.fleet; f != nil {
		// Rooms another instance records in keep the mark (the account is shared).
		n.mu.Lock()
		var marked []id.RoomID
		for room, st := range n.has {
			if st.on && !recording[room] {
				marked = append(marked, room)
			}
		}
		n.mu.Unlock()
		for _, room := range marked {
			ctx, cancel := n.lc.dbCtx()
			if l, err := n.lc.db.LiveLease(ctx, storage.WatchResource(string(room))); err == nil && l.Owner != f.owner {
				recording[room] = true
			}
			cancel()
		}
	}
	n.mu.Lock()
	for room, st := range n.has {
		if st.on && !recording[room] {
			if _, asked := n.wanted[room]; !asked {
				n.wantLocked(room, false)
			}
		}
	}
	n.mu.Unlock()
	n.poke()
}

// run applies the changes until ctx ends.
func (n *nameMarks) run(ctx context.Context) {
	for {
		wait := n.step(ctx, false)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-n.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// flush applies every pending change now, without the per-room gap (shutdown), until ctx
// ends.
func (n *nameMarks) flush(ctx context.Context) {
	for ctx.Err() == nil {
		wait := n.step(ctx, true)
		if wait == time.Hour {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// step sends at most one due change and returns how long until the next one may go
// (time.Hour: nothing is pending). now ignores the per-room gap and the retry pauses.
func (n *nameMarks) step(ctx context.Context, now bool) time.Duration {
	t := n.lc.now()
	n.mu.Lock()
	if !n.ready {
		n.mu.Unlock()
		return time.Hour // Recover has not run: what the rooms carry is not known yet
	}
	var (
		room  id.RoomID
		on    bool
		found bool
		next  = time.Hour
	)
	for r, w := range n.wanted {
		st := n.has[r]
		if st == nil {
			st = &markState{}
			n.has[r] = st
		}
		if st.sending {
			next = min(next, n.pace)
			continue
		}
		if st.on == w {
			delete(n.wanted, r)
			continue
		}
		due := st.changed.Add(n.gap)
		if st.retryAt.After(due) {
			due = st.retryAt
		}
		if !now && due.After(t) {
			next = min(next, due.Sub(t))
			continue
		}
		room, on, found = r, w, true
		st.sending = true
		break
	}
	n.mu.Unlock()
	if !found {
		return next
	}
	err := n.send(ctx, room, on)
	n.mu.Lock()
	st := n.has[room]
	st.sending = false
	switch {
	case err == nil:
		st.on, st.changed, st.tries, st.retryAt = on, t, 0, time.Time{}
	default:
		st.tries++
		backoff := markRetry << min(st.tries-1, 5)
		st.retryAt = t.Add(min(backoff, markRetryMax))
		if st.tries >= markTries || now {
			// Given up: a mark left on is cleaned at the next start (its row stays).
			n.lc.log.Warn().Err(err).Stringer("room_id", room).Bool("mark", on).Int("tries", st.tries).Msg("Could not change the bot's display name in the room; giving up")
			if n.wanted[room] == on {
				delete(n.wanted, room)
			}
		} else {
			n.lc.log.Info().Err(err).Stringer("room_id", room).Bool("mark", on).Msg("Could not change the bot's display name in the room; retrying")
		}
	}
	n.mu.Unlock()
	return n.pace
}

// send changes one room's mark, with its row: written before a mark goes on, removed after
// it went off.
func (n *nameMarks) send(ctx context.Context, room id.RoomID, on bool) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if on {
		if err := n.lc.db.SetNameMark(dctx, string(room), n.lc.now()); err != nil {
			return err
		}
	}
	if err := n.lc.chat.SetRecordingMark(dctx, room, on); err != nil {
		return err
	}
	if !on {
		if err := n.lc.db.ClearNameMark(dctx, string(room)); err != nil {
			n.lc.log.Warn().Err(err).Stringer("room_id", room).Msg("Could not forget the recording mark of the room")
		}
	}
	n.lc.log.Debug().Stringer("room_id", room).Bool("mark", on).Msg("Changed the bot's display name in the room")
	return nil
}

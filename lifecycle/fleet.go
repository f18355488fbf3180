package lifecycle

import (
	"context"
	"errors"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/ctxtime"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// How the instances of a fleet (several processes on one PostgreSQL database) share the
// work. They all see the same room events; leases decide which one acts:
//
//   - A room's recordings belong to the instance that holds the room's lease
//     (storage.WatchResource): it takes it when it admits a call there (a call that
//     begins with autorecord on, !start, a ring, a legacy invite), renews it while it
//     records there, and gives it back when its last recording there ends. The others
//     stay silent about that room's calls and commands: exactly one answer, never two
//     recordings of one call.
//   - Before it tries for a room, an instance waits a little per recording it runs
//     (perRecordingWait), and much longer when it is at its limit (fullWait), so the
//     least loaded one wins while another can take the call.
//   - A command in a room nobody records in is answered by the instance that takes the
//     lease on the command's event (storage.EventResource), which nobody gives back.
//
// With SQLite there is one instance: lc.fleet is nil and every check passes at once.
const (
	// roomLeaseTTL: a room whose owner stops renewing (killed, host gone) is free
	// again after this, and taken over (adopt.go); the owner renews every third of it,
	// so two renewals may fail before the room changes hands (and an outage of the
	// database for everyone moves nothing: adopt.go's takeable). 5 s: with the rejoin
	// (about 3 s) a dead owner's calls record again within issue 17's 10 s.
	roomLeaseTTL = 5 * time.Second
	// eventLeaseTTL: how long the lease on one event keeps a late instance silent about
	// it (far longer than an instance is behind in its sync).
	eventLeaseTTL = time.Hour
	// perRecordingWait is how long an instance waits per recording it runs before it
	// tries for a new call, and fullWait how long one at its limit waits (another one that
	// can take the call has taken it by then).
	// A second per recording: more than two instances' syncs usually differ by, so the
	// least loaded wins even when it sees the event a little later.
	perRecordingWait = time.Second
	maxLoadWait      = 5 * time.Second
	fullWait         = 8 * time.Second
	// adoptPerRecording is how long an instance waits per recording it runs before it
	// takes over a room whose owner stopped, and maxAdoptWait its bound: the least loaded
	// instance wins, but the calls record again within issue 17's 10 s. The instances look
	// every adoptEvery, so a difference of one recording decides.
	adoptPerRecording = 600 * time.Millisecond
	maxAdoptWait      = 2 * time.Second
	adoptEvery        = 500 * time.Millisecond
	// roomIdleGrace is how long a room lease is kept with nothing recording in the room
	// (a call being answered, a backend still joining, an admission refused: the
	// instances that try later stay silent) before it is given back.
	roomIdleGrace = 30 * time.Second
)

// fleet is this instance's share of the work on a shared database.
type fleet struct {
	lc    *Lifecycle
	owner string // instance id and process token: the owner of this process's leases

	ttl                                time.Duration
	perRecording, maxLoad, full, grace time.Duration

	// adoptPer and adoptMax are the wait per recording before taking over a room, and
	// its bound (adoptWait).
	adoptPer, adoptMax time.Duration

	copies manifestCopies // what snapshot stored last (adopt.go)

	// onceTTL is how long a lease on a once-only action runs without a renewal (once.go).
	onceTTL time.Duration

	takeMu sync.Mutex // one take or release at a time
	mu     sync.Mutex
	rooms  map[id.RoomID]*roomLease
	// handed holds the folders of recordings handed over while written here (handover.go).
	handed map[string]bool
	// copyMu is held by a snapshot across its look at handed and its manifest copy's PUT,
	// and by a hand-over from its copies to marking them handed: a snapshot in flight
	// cannot store an older copy over the one the taker starts from.
	copyMu sync.Mutex

	// dbUpSince is since when the database has answered this instance without a break:
	// its claim at start, then the looks for rooms to take over (zero: the last look
	// failed; adopt.go).
	dbMu      sync.Mutex
	dbUpSince time.Time
}

type roomLease struct {
	k *storage.LeaseKeeper
	// idleSince is when the room was first seen with nothing recording (zero: busy).
	idleSince time.Time
}

func newFleet(lc *Lifecycle, owner string) *fleet {
	return &fleet{lc: lc, owner: owner, ttl: roomLeaseTTL, perRecording: perRecordingWait, maxLoad: maxLoadWait,
		full: fullWait, grace: roomIdleGrace, adoptPer: adoptPerRecording, adoptMax: maxAdoptWait,
		onceTTL: onceTTL, rooms: map[id.RoomID]*roomLease{}, handed: map[string]bool{}, dbUpSince: time.Now()}
}

// Fleet reports whether this instance shares the work with others (PostgreSQL).
func (lc *Lifecycle) Fleet() bool { return lc.fleet != nil }

// loadWait is how long this instance waits before trying for a new call of kind: a
// little per recording it runs, much longer when it is at its limit for that kind.
func (f *fleet) loadWait(kind recorder.Kind) time.Duration {
	d, _ := f.busyWait(kind.OneToOne(), f.perRecording, f.maxLoad)
	return d
}

// busyWait is how long this instance waits before it tries for work others may do (a new
// call, a room to take over; oneToOne says which limit applies): per for each recording
// it runs, at most most, so that the least loaded instance wins; f.full when it is at its
// limit (full), so that one that can take the work has taken it by then.
func (f *fleet) busyWait(oneToOne bool, per, most time.Duration) (d time.Duration, full bool) {
	lc := f.lc
	lc.mu.Lock()
	total, ones := len(lc.live), 0
	for _, lr := range lc.live {
		if lr.kind.OneToOne() {
			ones++
		}
	}
	lc.mu.Unlock()
	if (oneToOne && ones >= lc.cfg.Calls.MaxCalls) || (!oneToOne && total-ones >= lc.cfg.Calls.MaxGroupRecordings) {
		return f.full, true
	}
	return min(time.Duration(total)*per, most), false
}

// wait is the wait before trying for a new call of kind: loadWait, or none when no other
// instance runs (a fleet of one answers as fast as a single recorder).
func (f *fleet) wait(ctx context.Context, kind recorder.Kind) error {
	d := f.loadWait(kind)
	if d <= 0 {
		return nil
	}
	if n, err := f.lc.db.OthersLive(ctx, storage.InstanceResource(""), f.owner); err == nil && n == 0 {
		return nil
	}
	return ctxtime.Sleep(ctx, d)
}

// holds reports whether this instance holds room's lease.
func (f *fleet) holds(room id.RoomID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	rl := f.rooms[room]
	return rl != nil && !errors.Is(rl.k.Err(), storage.ErrLeaseLost)
}

// take tries for room's lease now (no wait): whether this instance holds it afterwards.
func (f *fleet) take(ctx context.Context, room id.RoomID) (bool, error) {
	// One attempt at a time in this process: two keepers of one lease would give it
	// back to each other.
	f.takeMu.Lock()
	defer f.takeMu.Unlock()
	if f.holds(room) {
		return true, nil
	}
	k, err := f.lc.db.KeepLease(ctx, storage.WatchResource(string(room)), f.owner, f.ttl, func(err error) { f.lost(room, err) })
	if errors.Is(err, storage.ErrLeaseHeld) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	old := f.rooms[room]
	f.rooms[room] = &roomLease{k: k}
	f.mu.Unlock()
	if old != nil {
		old.k.Stop() // a lost one: the lease is the new keeper's now
	}
	return true, nil
}

// lost is called when another instance took a room's lease from this one (its renewals
// did not reach the database in time): this instance must not go on writing that room's
// recording as if it were the only one.
func (f *fleet) lost(room id.RoomID, err error) {
	f.lc.log.Error().Err(err).Stringer("room_id", room).
		Msg("Another instance took over this room's recordings after this one could not renew its lease; stopping them here")
	f.lc.mu.Lock()
	live := f.lc.recordsInLocked(room)
	f.lc.mu.Unlock()
	if !live {
		return
	}
	f.lc.wg.Add(1)
	go func() {
		defer f.lc.wg.Done()
		ctx, cancel := f.lc.dbCtx()
		defer cancel()
		f.lc.calls.Stop(ctx, room, "another recorder instance took the recording over")
	}()
}

// release gives room's lease back when nothing records there any more.
func (f *fleet) release(ctx context.Context, room id.RoomID) {
	f.takeMu.Lock()
	defer f.takeMu.Unlock()
	f.lc.mu.Lock()
	busy := f.lc.recordsInLocked(room)
	f.lc.mu.Unlock()
	if busy {
		return
	}
	f.mu.Lock()
	rl := f.rooms[room]
	delete(f.rooms, room)
	f.mu.Unlock()
	if rl == nil {
		return
	}
	if err := rl.k.Release(ctx); err != nil {
		f.lc.log.Warn().Err(err).Stringer("room_id", room).Msg("Could not give the room's lease back; it runs out by itself")
	}
}

// ClaimRoom is the admission of a new call in room (kind says which limit applies): on a
// shared database it waits according to this instance's load and tries for the room's
// lease, and reports whether this instance won it (true: go on; false: another instance
// has the room, stay silent). With SQLite it is always true at once. A caller that wins
// but records nothing after all gives the room back with ReleaseRoom.
func (lc *Lifecycle) ClaimRoom(ctx context.Context, room id.RoomID, kind recorder.Kind) (bool, error) {
	f := lc.fleet
	if f == nil || f.holds(room) {
		return true, nil
	}
	if _, err := lc.db.LiveLease(ctx, storage.WatchResource(string(room))); err == nil {
		return false, nil // someone has it: no need to wait
	} else if !errors.Is(err, storage.ErrNotFound) {
		return false, err
	}
	if err := f.wait(ctx, kind); err != nil {
		return false, err
	}
	return f.take(ctx, room)
}

// TakeRoom is ClaimRoom without the wait, for an admission that waited already (a command
// Route let through).
func (lc *Lifecycle) TakeRoom(ctx context.Context, room id.RoomID) (bool, error) {
	if lc.fleet == nil {
		return true, nil
	}
	return lc.fleet.take(ctx, room)
}

// ReleaseRoom gives back the room lease ClaimRoom won, when nothing records in room (an
// admission that ended in a refusal).
func (lc *Lifecycle) ReleaseRoom(ctx context.Context, room id.RoomID) {
	if lc.fleet != nil {
		lc.fleet.release(ctx, room)
	}
}

// Route decides which instance handles a command (or another event that needs one
// answer) in room: the one that holds the room's lease; when nobody does, the one that
// takes the lease on the event, after waiting according to its load when the command may
// start a recording (admission, of kind). With SQLite it is always true.
func (lc *Lifecycle) Route(ctx context.Context, room id.RoomID, evt id.EventID, admission bool, kind recorder.Kind) bool {
	f := lc.fleet
	if f == nil || f.holds(room) {
		return true
	}
	log := lc.log.With().Stringer("room_id", room).Stringer("event_id", evt).Logger()
	if l, err := lc.db.LiveLease(ctx, storage.WatchResource(string(room))); err == nil {
		log.Debug().Str("owner", l.Owner).Msg("Another instance records in this room; it answers")
		return false
	} else if !errors.Is(err, storage.ErrNotFound) {
		// Silence rather than a second answer: the database decides who answers.
		log.Error().Err(err).Msg("Could not read who records in the room; not answering")
		return false
	}
	if admission {
		if err := f.wait(ctx, kind); err != nil {
			return false
		}
	}
	return lc.ClaimEvent(ctx, evt)
}

// ClaimEvent reports whether this instance is the one to act on an event every instance
// sees (an invite's greeting, a command): the first to take the event's lease. With
// SQLite it is always true.
func (lc *Lifecycle) ClaimEvent(ctx context.Context, evt id.EventID) bool {
	f := lc.fleet
	if f == nil {
		return true
	}
	if evt == "" {
		return false
	}
	l, err := lc.db.AcquireLease(ctx, storage.EventResource(string(evt)), f.owner, eventLeaseTTL)
	if err != nil {
		lc.log.Error().Err(err).Stringer("event_id", evt).Msg("Could not take the event's lease; not acting on it")
		return false
	}
	return l.Held(f.owner)
}

// sweep gives back the room leases of rooms where nothing has recorded for a while (an
// admission whose call never started) and forgets lost ones. busy reports rooms where a
// recording is being started. (The expired leases on single events and on once-only
// actions are deleted at the once-leases' slower pace: onceRound.)
func (f *fleet) sweep(ctx context.Context) {
	if f.lc.shuttingDown.Load() {
		return // the rooms of paused recordings are handed over at the end (handOver)
	}
	now := f.lc.now()
	f.mu.Lock()
	rooms := make([]id.RoomID, 0, len(f.rooms))
	for room := range f.rooms {
		rooms = append(rooms, room)
	}
	f.mu.Unlock()
	for _, room := range rooms {
		f.lc.mu.Lock()
		busy := f.lc.recordsInLocked(room)
		f.lc.mu.Unlock()
		if !busy && f.lc.busy != nil {
			busy = f.lc.busy(room)
		}
		f.mu.Lock()
		rl := f.rooms[room]
		release := false
		switch {
		case rl == nil:
		case errors.Is(rl.k.Err(), storage.ErrLeaseLost):
			delete(f.rooms, room)
		case busy:
			rl.idleSince = time.Time{}
		case rl.idleSince.IsZero():
			rl.idleSince = now
		case now.Sub(rl.idleSince) >= f.grace:
			release = true
		}
		f.mu.Unlock()
		if release {
			f.release(ctx, room)
		}
	}
}

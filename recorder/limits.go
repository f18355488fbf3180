package recorder

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Limits on what one sender can make the recorder write. Parts come from the sender's
// own behaviour (a new SSRC, a timestamp jump, new codec parameters, a long mute with
// gap_policy split), and a hostile or broken sender can make them as fast as it sends
// packets; each is a file and a manifest entry. Two limits keep that from hurting anyone
// else:
//
//   - Files per participant and per call. Every file counts against its participant
//     (user id) and against the call (Options.MaxFilesPerParticipant and MaxTracks), and
//     a participant's limit is below the call's: one participant cannot take the files
//     everybody else's tracks need. A track reserves its first file when it is added
//     (AddTrack fails with ErrFileLimit when none is left) and each later part before it
//     ends the current one, so a refused part never leaves the track without a file.
//   - Parts for timeline jumps per track. A jump (timestamp jump, stream restart) opens a
//     new part only while the track's token bucket has a token: partJumpBurst at once,
//     one more every partJumpEvery. A jump storm beyond it continues in the same file at
//     the frames' arrival time (rebase), is counted in the file's timeline_jumps, and the
//     manifest gets one warning per track.
//
// A refused part is never a lost frame: the track goes on in the file it has.
const (
	partJumpBurst = 3
	partJumpEvery = 20 * time.Second
)

// ErrFileLimit is returned when a call, or a participant of it, has as many files as it
// may have.
var ErrFileLimit = errors.New("file limit reached")

// claimFileLocked reserves a file for a track of user: the call and the participant must
// both have one left, counting the files in the manifest and the reservations.
func (s *Session) claimFileLocked(user string) error {
	o := &s.rec.opts
	if n := len(s.manifest.Tracks) + s.nreserved; n >= o.MaxTracks {
		return fmt.Errorf("%w: this call already has %d files, the most a call may have", ErrFileLimit, n)
	}
	n := s.reserved[user]
	for i := range s.manifest.Tracks {
		if s.manifest.Tracks[i].UserID == user {
			n++
		}
	}
	if n >= o.MaxFilesPerParticipant {
		return fmt.Errorf("%w: %s already has %d files in this call, the most one participant may have", ErrFileLimit, user, n)
	}
	if s.reserved == nil {
		s.reserved = map[string]int{}
	}
	s.reserved[user]++
	s.nreserved++
	return nil
}

// unreserveLocked gives back one reservation of user (a file was registered for it, or
// the track no longer needs it).
func (s *Session) unreserveLocked(user string) {
	if s.reserved[user] > 0 {
		s.reserved[user]--
		s.nreserved--
	}
	if s.reserved[user] == 0 {
		delete(s.reserved, user)
	}
}

// releaseFilesLocked gives back the reservations of a track that ended.
func (s *Session) releaseFilesLocked(t *Track) {
	for ; t.claims > 0; t.claims-- {
		s.unreserveLocked(t.info.UserID)
	}
}

// claimPart reserves a file for the track's next part, before the current one ends.
func (t *Track) claimPart() error {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.claims > 0 {
		return nil
	}
	if err := s.claimFileLocked(t.info.UserID); err != nil {
		return err
	}
	t.claims++
	return nil
}

// jumpBucket is a track's token bucket of parts for timeline jumps.
type jumpBucket struct {
	tokens int
	since  time.Time // when the next token started to accrue
	init   bool
}

// take takes a token if there is one at now.
func (b *jumpBucket) take(now time.Time, burst int, every time.Duration) bool {
	if !b.init {
		b.tokens, b.since, b.init = burst, now, true
	}
	if every > 0 && now.After(b.since) {
		n := int(now.Sub(b.since) / every)
		b.tokens = min(burst, b.tokens+n)
		b.since = b.since.Add(time.Duration(n) * every)
		if b.tokens == burst {
			b.since = now
		}
	}
	if b.tokens <= 0 {
		return false
	}
	b.tokens--
	return true
}

// probeSize is how much a call folder must take to count as writable again after a write
// error: enough for the headers and first pages of a new part, and the manifest.
const probeSize = 64 << 10

// probeSpace checks that folder takes new files: it writes probeSize bytes to a new file,
// syncs and removes it.
func probeSpace(folder string) error {
	f, err := os.CreateTemp(folder, ".probe-*")
	if err != nil {
		return fmt.Errorf("create probe file: %w", err)
	}
	name := f.Name()
	_, err = f.Write(make([]byte, probeSize))
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close(), os.Remove(name))
}

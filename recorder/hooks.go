package recorder

import "time"

// Hooks let the code around the recorder follow a recording as it happens: the state
// database, uploads, metrics. Every hook is optional.
//
// They are called synchronously, from the goroutine that changed the manifest, right after
// the change was made (it reaches manifest.json at once, or within the flush interval when
// changes come fast; see Session's manifest writes): OnSessionStart before Start (or
// Resume) returns, after the first manifest is on disk,
// OnPartStart after a part's entry exists and before its file is created (so bookkeeping
// can be queued before the first byte is written), OnPartComplete after the part's file is
// closed and its size and SHA-256 are in the entry, OnSessionClosing when Close begins and
// OnSessionEnd after the final manifest is written.
//
// OnPartStart, OnWriteError and OnWriteResumed run on the track's own goroutine, the one
// that writes its media; OnPartComplete too for a part that could not be created or
// finalised, and for a part that closed cleanly on the goroutine that computed its SHA-256
// after the close (the entry said complete before that), before OnSessionEnd. A hook must return quickly, do no I/O there (no database, no network, no
// disk) and must not call back into the Session; it may read what it is given and hand
// work to other goroutines in the order it came (the recording lifecycle queues it). No
// hook is called with the session's lock held.
type Hooks struct {
	// OnSessionStart is called for a new or resumed session (Session.Resumed tells which).
	// A non-nil error refuses the recording: Start returns it (wrapped), and a new folder
	// is removed again. Use it to refuse what cannot be recorded safely (a full disk), not
	// for bookkeeping that may fail.
	OnSessionStart func(s *Session) error
	// OnPartStart is called when a part (file) of a track is registered.
	OnPartStart func(s *Session, e FileEntry)
	// OnPartComplete is called when a part's file is final (Status complete), or could not
	// be created or finalised (Status interrupted).
	OnPartComplete func(s *Session, e FileEntry)
	// OnSessionClosing is called when Close begins, before the tracks are stopped.
	OnSessionClosing func(s *Session)
	// OnSessionEnd is called with the final manifest.
	OnSessionEnd func(s *Session, m Manifest)

	// OnWriteError is called when a track's file could not be written (a full disk, an
	// I/O error; err says which) or a new part's file could not be created, once per
	// outage of a track, from the track's goroutine. e is the part that ended (Status
	// interrupted, EndReason the error; only File is set when no part was open). The
	// track keeps running but loses its media until the folder takes writes again; it
	// then goes on in a new part by itself (OnWriteResumed). The manifest has a warning
	// either way.
	//
	// The bot should tell the room, once per recording and not per track (several tracks
	// fail together when the disk fills), that the recording has a gap from now on and
	// why ("the server's disk is full"), and tell the operator in its log. It must not stop
	// the recording for it: writing goes on by itself when space comes back.
	OnWriteError func(s *Session, e FileEntry, err error)
	// OnWriteResumed is called when a track writes again after OnWriteError: e is its new
	// part (just opened), lost how long the track was not recorded. The bot can tell the
	// room the recording goes on.
	OnWriteResumed func(s *Session, e FileEntry, lost time.Duration)
}

func (h *Hooks) sessionStart(s *Session) error {
	if h == nil || h.OnSessionStart == nil {
		return nil
	}
	return h.OnSessionStart(s)
}

func (h *Hooks) partStart(s *Session, e FileEntry) {
	if h != nil && h.OnPartStart != nil {
		h.OnPartStart(s, e)
	}
}

func (h *Hooks) partComplete(s *Session, e FileEntry) {
	if h != nil && h.OnPartComplete != nil {
		h.OnPartComplete(s, e)
	}
}

func (h *Hooks) sessionClosing(s *Session) {
	if h != nil && h.OnSessionClosing != nil {
		h.OnSessionClosing(s)
	}
}

func (h *Hooks) sessionEnd(s *Session, m Manifest) {
	if h != nil && h.OnSessionEnd != nil {
		h.OnSessionEnd(s, m)
	}
}

func (h *Hooks) writeError(s *Session, e FileEntry, err error) {
	if h != nil && h.OnWriteError != nil {
		h.OnWriteError(s, e, err)
	}
}

func (h *Hooks) writeResumed(s *Session, e FileEntry, lost time.Duration) {
	if h != nil && h.OnWriteResumed != nil {
		h.OnWriteResumed(s, e, lost)
	}
}

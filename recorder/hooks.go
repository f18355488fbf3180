package recorder

// Hooks let the code around the recorder follow a recording as it happens: the state
// database, uploads, metrics. Every hook is optional.
//
// They are called synchronously, from the goroutine that changed the manifest, right after
// the change reached manifest.json: OnSessionStart before Start (or Resume) returns,
// OnPartStart after a part's entry exists and before its file is created (so bookkeeping
// can be queued before the first byte is written), OnPartComplete after the part's file is
// closed and its size and SHA-256 are in the entry, OnSessionClosing when Close begins and
// OnSessionEnd after the final manifest is written.
//
// OnPartStart and OnPartComplete run on the track's own goroutine, the one that writes its
// media: a hook must return quickly, do no I/O there (no database, no network, no disk)
// and must not call back into the Session; it may read what it is given and hand work to
// other goroutines in the order it came (the recording lifecycle queues it). No hook is
// called with the session's lock held.
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

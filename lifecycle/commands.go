package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// Request is a command someone typed in a room, as the chat layer parsed it (and after
// it checked the command's rate limit).
type Request struct {
	Room   id.RoomID
	Sender id.UserID
	Event  id.EventID
	Args   []string
}

// FolderOf resolves a recording id of !recordings in a room to its call folder's name
// ("" when the room has no such recording).
func (lc *Lifecycle) FolderOf(ctx context.Context, room id.RoomID, ref string) string {
	r, err := lc.db.Recording(ctx, strings.ToLower(ref))
	if err != nil || r.RoomID != string(room) {
		return ""
	}
	return r.Folder
}

// Recordings is !recordings [id]: the room's recordings (for anyone in the room), or one
// recording's files with fresh links (for the people recorded in it and whoever may
// start recordings in the room; by direct message with storage.links_by_dm).
func (lc *Lifecycle) Recordings(ctx context.Context, req Request) error {
	if len(req.Args) > 0 {
		r, err := lc.db.Recording(ctx, strings.ToLower(req.Args[0]))
		if err != nil || r.RoomID != string(req.Room) {
			return usererr.Error{Msg: fmt.Sprintf("There is no recording %q in this room. Type %srecordings for the list.", req.Args[0], lc.cfg.Bot.CommandPrefix)}
		}
		if r.Status.Gone() {
			return usererr.Error{Msg: fmt.Sprintf("The recording %s was deleted on %s.", r.ID, r.DeletedAt.UTC().Format("2006-01-02 15:04 UTC"))}
		}
		if r.Status.Live() || r.Status == storage.RecordingPaused {
			return usererr.Error{Msg: fmt.Sprintf("The recording %s is still running; the links come when it ends.", r.ID)}
		}
		if err := lc.mayGetLinks(ctx, req, r); err != nil {
			return err
		}
		sum := lc.summarize(ctx, r, "", lc.uploadsComplete(ctx, r.ID), true)
		if !lc.cfg.Storage.LinksByDM || lc.cfg.EffectiveLinks() == config.LinksNone {
			lc.postSummary(ctx, req.Room, sum, "", "")
			return nil
		}
		dm, err := lc.chat.DirectRoom(ctx, req.Sender)
		if err != nil {
			return fmt.Errorf("open a direct chat with %s: %w", req.Sender, err)
		}
		intro := fmt.Sprintf("The recording %s of %s:", r.ID, r.RoomID)
		sum.top.Text, sum.top.Markdown = intro+"\n"+sum.top.Text, EscapeMarkdown(intro)+"\n"+sum.top.Markdown
		if top, files := lc.postSummary(ctx, dm, sum, "", ""); top == "" || (files == "" && sum.files.Text != "") {
			return usererr.Error{Msg: fmt.Sprintf("Sorry %s, I could not send you the links in a direct message; try again in a while.", req.Sender)}
		}
		lc.chat.Notice(ctx, req.Room, fmt.Sprintf("%s, I sent you the links of %s in a direct message.", req.Sender, r.ID), req.Event, req.Sender)
		return nil
	}
	list, err := lc.db.RecordingsInRoom(ctx, string(req.Room), 20)
	if err != nil {
		return fmt.Errorf("list recordings: %w", err)
	}
	if len(list) == 0 {
		lc.chat.Notice(ctx, req.Room, "No recordings in this room yet.", "")
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Recordings in this room, newest first (type %srecordings ID for the files and links, %sdelete ID to delete one):", lc.cfg.Bot.CommandPrefix, lc.cfg.Bot.CommandPrefix)
	for _, r := range list {
		fmt.Fprintf(&b, "\n• %s: from %s, %s long, %s, %s", r.ID, r.StartedAt.UTC().Format("2006-01-02 15:04 UTC"),
			FormatDuration(time.Duration(r.DurationMs)*time.Millisecond), FormatBytes(r.Bytes), describeStatus(r))
		if !r.ExpiresAt.IsZero() && !r.Status.Gone() {
			fmt.Fprintf(&b, ", deleted on %s", r.ExpiresAt.UTC().Format("2006-01-02"))
		}
	}
	lc.chat.Notice(ctx, req.Room, b.String(), "")
	return nil
}

func describeStatus(r *storage.Recording) string {
	switch r.Status {
	case storage.RecordingStarted, storage.RecordingActive:
		return "recording now"
	case storage.RecordingStopping:
		return "finishing"
	case storage.RecordingSaved:
		return "saved"
	case storage.RecordingUploaded, storage.RecordingNotified:
		if r.Interruptions > 0 {
			return fmt.Sprintf("saved (interrupted %s)", Plural(r.Interruptions, "time"))
		}
		return "saved"
	case storage.RecordingInterrupted:
		return "interrupted (files repaired)"
	case storage.RecordingPaused:
		return "paused by a restart of the recorder, continuing"
	case storage.RecordingExpired:
		return "expired and deleted"
	case storage.RecordingDeleted:
		return "deleted"
	default:
		return string(r.Status)
	}
}

// Delete is !delete ID, for those who may start and stop recordings here.
func (lc *Lifecycle) Delete(ctx context.Context, req Request) error {
	if len(req.Args) != 1 {
		return usererr.Error{Msg: fmt.Sprintf("Type %sdelete ID (the ids are in %srecordings).", lc.cfg.Bot.CommandPrefix, lc.cfg.Bot.CommandPrefix)}
	}
	r, err := lc.db.Recording(ctx, strings.ToLower(req.Args[0]))
	if errors.Is(err, storage.ErrNotFound) || (err == nil && r.RoomID != string(req.Room)) {
		return usererr.Error{Msg: fmt.Sprintf("There is no recording %q in this room.", req.Args[0])}
	} else if err != nil {
		return err
	}
	if err := lc.chat.MayRecord(ctx, req.Room, req.Sender, "delete recordings"); err != nil {
		return err
	}
	if r.Status.Gone() {
		return usererr.Error{Msg: fmt.Sprintf("The recording %s is already deleted.", r.ID)}
	}
	if r.Status.Live() || r.Status == storage.RecordingPaused {
		return usererr.Error{Msg: fmt.Sprintf("The recording %s is still running; type %sstop first.", r.ID, lc.cfg.Bot.CommandPrefix)}
	}
	// Under the leases of the recording's removal (its expiry, another !delete) and of its
	// summary (which waits for the uploads; one running here is ended by the deletion),
	// on the row as it is then: one deletion, one notice, no summary or upload after it.
	release, err := lc.takeOnce(ctx, onceRemoval, r.ID)
	if err != nil {
		return lc.deleteBusy(r, err, "handling the expiry or the deletion of the recording %s right now; type %sdelete %s again in a minute")
	}
	defer release()
	if r, err = lc.db.Recording(ctx, r.ID); err != nil {
		return fmt.Errorf("re-read recording %s: %w", r.ID, err)
	}
	if r.Status.Gone() {
		return usererr.Error{Msg: fmt.Sprintf("The recording %s is already deleted.", r.ID)}
	}
	if !lc.deliveringHere(r.ID) {
		release, err := lc.takeOnce(ctx, onceSummary, r.ID)
		var busy *errOnceBusy
		switch {
		case err == nil:
			defer release()
		case errors.As(err, &busy) && summaryOut(r):
			// The summary is posted: whoever holds its lease (an older instance that keeps
			// it while it edits in the links) only edits it, and stops once it finds the
			// recording deleted.
		default:
			return lc.deleteBusy(r, err, "still uploading the recording %s and posting its summary; type %sdelete %s again once the summary is there")
		}
	}
	if err := lc.deleteRecording(ctx, r, storage.RemovedByRequest); err != nil {
		return fmt.Errorf("delete recording %s: %w", r.ID, err)
	}
	lc.log.Info().Str("recording", r.ID).Stringer("by", req.Sender).Msg("Recording deleted on request")
	lc.chat.Notice(ctx, req.Room, fmt.Sprintf("🗑 Deleted the recording %s (%s): its files are gone from the recorder and from storage.", r.ID, r.StartedAt.UTC().Format("2006-01-02 15:04 UTC")), req.Event)
	return nil
}

// summaryOut reports whether r's summary is posted, its retries done.
func summaryOut(r *storage.Recording) bool {
	return r.SummaryEvent != "" && r.Status != storage.RecordingFailedNotify
}

// deleteBusy is the answer to a !delete of r when the lease on one of its actions could
// not be taken (err, from takeOnce): who is doing what (doing, a format with the
// recording's id, the command prefix and the id again).
func (lc *Lifecycle) deleteBusy(r *storage.Recording, err error, doing string) error {
	var busy *errOnceBusy
	if !errors.As(err, &busy) {
		return fmt.Errorf("take the lease on deleting recording %s: %w", r.ID, err)
	}
	who := "This recorder is"
	if busy.holder != "" {
		who = "Recorder instance " + busy.holder + " is"
	}
	return usererr.Error{Msg: who + " " + fmt.Sprintf(doing, r.ID, lc.cfg.Bot.CommandPrefix, r.ID) + "."}
}

// deliveringHere reports whether this process runs the delivery of the recording recID.
func (lc *Lifecycle) deliveringHere(recID string) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	_, ok := lc.delivering[recID]
	return ok
}

// mayGetLinks lets the people recorded in a recording and whoever may start recordings in
// the room have its links; anyone else in the room may only see that it exists.
func (lc *Lifecycle) mayGetLinks(ctx context.Context, req Request, r *storage.Recording) error {
	if m, err := recorder.ReadManifest(filepath.Join(lc.cfg.Recordings.Dir, filepath.Base(r.Folder))); err == nil {
		for _, p := range m.Participants {
			if id.UserID(p.UserID) == req.Sender {
				return nil
			}
		}
	}
	if parts, err := lc.db.Parts(ctx, r.ID); err == nil {
		for _, p := range parts {
			if id.UserID(p.UserID) == req.Sender {
				return nil
			}
		}
	}
	if err := lc.chat.MayRecord(ctx, req.Room, req.Sender, "start recordings"); err != nil {
		var ue usererr.Error
		if errors.As(err, &ue) {
			return usererr.Error{Msg: fmt.Sprintf("Sorry %s, the links of %s are for the people recorded in it and for members who may start recordings here.", req.Sender, r.ID)}
		}
		return err
	}
	return nil
}

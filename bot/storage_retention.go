package bot

import (
	"context"
	"errors"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// retentionInterval is how often expiry is checked: a minute, or more often when the
// configured times are short.
func (st *storeRT) retentionInterval() time.Duration {
	every := time.Minute
	for _, d := range []time.Duration{st.cfg.Recordings.ExpireAfter.D(), st.cfg.Recordings.ExpireNotice.D(), st.cfg.Storage.S3.DeleteLocalDelay.D()} {
		if d > 0 && d/10 < every {
			every = max(d/10, time.Second)
		}
	}
	return every
}

// retention tells rooms about recordings that expire soon and deletes expired ones.
func (st *storeRT) retention(ctx context.Context) {
	st.sweepLocal(ctx)
	if st.cfg.Recordings.ExpireAfter.D() <= 0 {
		return
	}
	now := st.now()
	soon, err := st.db.ExpiringBefore(ctx, now.Add(st.cfg.Recordings.ExpireNotice.D()))
	if err != nil {
		st.log.Warn().Err(err).Msg("Could not list expiring recordings")
		return
	}
	for _, r := range soon {
		if r.Status.Live() {
			continue
		}
		if !r.ExpiresAt.After(now) {
			st.expire(ctx, r)
			continue
		}
		if !r.ExpiryNoticedAt.IsZero() {
			continue
		}
		text := fmt.Sprintf("🗑 The recording %s (%s, %s) will be deleted on %s, in %s. Download what you want to keep.",
			r.ID, r.StartedAt.UTC().Format("2006-01-02 15:04 UTC"), formatDuration(time.Duration(r.DurationMs)*time.Millisecond),
			r.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"), humanDuration(r.ExpiresAt.Sub(now)))
		if evt := st.b.notice(ctx, id.RoomID(r.RoomID), text, id.EventID(r.SummaryEvent)); evt == "" {
			continue // try again next round
		}
		if _, err := st.db.ModifyRecording(ctx, r.ID, func(r *storage.Recording) { r.ExpiryNoticedAt = now }); err != nil {
			st.log.Warn().Err(err).Msg("Could not store the expiry notice")
		}
	}
}

func (st *storeRT) expire(ctx context.Context, r *storage.Recording) {
	if err := st.deleteRecording(ctx, r, storage.StatusExpired); err != nil {
		st.log.Warn().Err(err).Str("recording", r.ID).Msg("Could not delete an expired recording; will retry")
		return
	}
	st.log.Info().Str("recording", r.ID).Str("folder", r.Folder).Msg("Deleted an expired recording")
	st.b.notice(ctx, id.RoomID(r.RoomID), fmt.Sprintf("🗑 Deleted the recording %s of %s: it was kept for %s (the recorder's retention setting).",
		r.ID, r.StartedAt.UTC().Format("2006-01-02 15:04 UTC"), humanDuration(st.cfg.Recordings.ExpireAfter.D())), "")
}

// deleteRecording removes a recording's files everywhere: uploads in flight are stopped,
// the copies in object storage and the local folder are deleted, and the rows are marked
// with status (expired or deleted). The rows stay, so !recordings still shows what was.
func (st *storeRT) deleteRecording(ctx context.Context, r *storage.Recording, status storage.Status) error {
	// A delivery still waiting for uploads of this recording ends now (even if the
	// deletion fails below and is tried again: nobody wants links to it any more).
	st.endDelivery(r.ID)
	if st.up != nil {
		st.up.Cancel(r.ID)
		ups, err := st.db.Uploads(ctx, r.ID)
		if err != nil {
			return err
		}
		for _, u := range ups {
			if u.UploadID != "" {
				if err := st.s3.Abort(ctx, u.Key, u.UploadID); err != nil {
					return err
				}
			}
		}
	}
	if st.s3 != nil {
		if err := st.s3.DeletePrefix(ctx, st.s3.FolderPrefix(r.Folder)); err != nil {
			return fmt.Errorf("delete the uploaded copies: %w", err)
		}
	}
	folder := filepath.Join(st.cfg.Recordings.Dir, filepath.Base(r.Folder))
	if err := os.RemoveAll(folder); err != nil {
		return fmt.Errorf("delete the local files: %w", err)
	}
	if err := st.db.SetPartsStatus(ctx, r.ID, status); err != nil {
		return err
	}
	if err := st.db.SetUploadsStatus(ctx, r.ID, status); err != nil {
		return err
	}
	_, err := st.db.ModifyRecording(ctx, r.ID, func(r *storage.Recording) {
		r.Status = status
		r.DeletedAt = st.now()
	})
	if st.up != nil {
		st.up.Forget(r.ID)
	}
	return err
}

// listRecordings is !recordings [id]: the room's recordings (for anyone in the room), or
// one recording's files with fresh links (for the people recorded in it and whoever may
// start recordings in the room; by direct message with storage.links_by_dm).
func (st *storeRT) listRecordings(ctx context.Context, cc *cmdContext) error {
	if len(cc.args) > 0 {
		r, err := st.db.Recording(ctx, strings.ToLower(cc.args[0]))
		if err != nil || r.RoomID != string(cc.roomID) {
			return userError{Msg: fmt.Sprintf("There is no recording %q in this room. Type %srecordings for the list.", cc.args[0], st.cfg.Bot.CommandPrefix)}
		}
		if r.Status.Gone() {
			return userError{Msg: fmt.Sprintf("The recording %s was deleted on %s.", r.ID, r.DeletedAt.UTC().Format("2006-01-02 15:04 UTC"))}
		}
		if r.Status.Live() {
			return userError{Msg: fmt.Sprintf("The recording %s is still running; the links come when it ends.", r.ID)}
		}
		if err := st.mayGetLinks(ctx, cc, r); err != nil {
			return err
		}
		text, htmlText := st.summaryText(ctx, r, "", st.uploadsComplete(ctx, r.ID), true)
		if !st.cfg.Storage.LinksByDM || st.cfg.EffectiveLinks() == config.LinksNone {
			st.sendSummary(ctx, cc.roomID, text, htmlText, "")
			return nil
		}
		dm, err := st.b.directRoom(ctx, cc.sender)
		if err != nil {
			return err
		}
		intro := fmt.Sprintf("The recording %s of %s:", r.ID, r.RoomID)
		if st.sendSummary(ctx, dm, intro+"\n"+text, html.EscapeString(intro)+"<br>"+htmlText, "") == "" {
			return errors.New("could not send you the direct message")
		}
		st.b.noticeMentions(ctx, cc.roomID, fmt.Sprintf("%s, I sent you the links of %s in a direct message.", cc.sender, r.ID), cc.event, []id.UserID{cc.sender})
		return nil
	}
	list, err := st.db.RecordingsInRoom(ctx, string(cc.roomID), 20)
	if err != nil {
		return fmt.Errorf("list recordings: %w", err)
	}
	if len(list) == 0 {
		st.b.notice(ctx, cc.roomID, "No recordings in this room yet.", "")
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Recordings in this room, newest first (type %srecordings ID for the files and links, %sdelete ID to delete one):", st.cfg.Bot.CommandPrefix, st.cfg.Bot.CommandPrefix)
	for _, r := range list {
		fmt.Fprintf(&b, "\n• %s: %s, %s, %s, %s", r.ID, r.StartedAt.UTC().Format("2006-01-02 15:04 UTC"),
			formatDuration(time.Duration(r.DurationMs)*time.Millisecond), formatBytes(r.Bytes), describeStatus(r))
		if !r.ExpiresAt.IsZero() && !r.Status.Gone() {
			fmt.Fprintf(&b, ", deleted on %s", r.ExpiresAt.UTC().Format("2006-01-02"))
		}
	}
	st.b.notice(ctx, cc.roomID, b.String(), "")
	return nil
}

func describeStatus(r *storage.Recording) string {
	switch r.Status {
	case storage.StatusStarted, storage.StatusActive:
		return "recording now"
	case storage.StatusStopping:
		return "finishing"
	case storage.StatusSaved:
		return "saved"
	case storage.StatusUploaded, storage.StatusNotified:
		if r.Interruptions > 0 {
			return fmt.Sprintf("saved (interrupted %d time(s))", r.Interruptions)
		}
		return "saved"
	case storage.StatusInterrupted:
		return "interrupted (files repaired)"
	case storage.StatusExpired:
		return "expired and deleted"
	case storage.StatusDeleted:
		return "deleted"
	default:
		return string(r.Status)
	}
}

// deleteCommand is !delete ID, for those who may start and stop recordings here.
func (st *storeRT) deleteCommand(ctx context.Context, cc *cmdContext) error {
	if len(cc.args) != 1 {
		return userError{Msg: fmt.Sprintf("Type %sdelete ID (the ids are in %srecordings).", st.cfg.Bot.CommandPrefix, st.cfg.Bot.CommandPrefix)}
	}
	r, err := st.db.Recording(ctx, strings.ToLower(cc.args[0]))
	if errors.Is(err, storage.ErrNotFound) || (err == nil && r.RoomID != string(cc.roomID)) {
		return userError{Msg: fmt.Sprintf("There is no recording %q in this room.", cc.args[0])}
	} else if err != nil {
		return err
	}
	if err := st.b.groups.mayRecord(ctx, cc.roomID, cc.sender); err != nil {
		var ue userError
		if errors.As(err, &ue) {
			return userError{Msg: strings.Replace(ue.Msg, "may start or stop recordings", "may delete recordings", 1)}
		}
		return err
	}
	if r.Status.Gone() {
		return userError{Msg: fmt.Sprintf("The recording %s is already deleted.", r.ID)}
	}
	if r.Status.Live() {
		return userError{Msg: fmt.Sprintf("The recording %s is still running; type %sstop first.", r.ID, st.cfg.Bot.CommandPrefix)}
	}
	if err := st.deleteRecording(ctx, r, storage.StatusDeleted); err != nil {
		return fmt.Errorf("delete recording %s: %w", r.ID, err)
	}
	st.log.Info().Str("recording", r.ID).Stringer("by", cc.sender).Msg("Recording deleted on request")
	st.b.notice(ctx, cc.roomID, fmt.Sprintf("🗑 Deleted the recording %s (%s): its files are gone from the recorder and from storage.", r.ID, r.StartedAt.UTC().Format("2006-01-02 15:04 UTC")), cc.event)
	return nil
}

// humanDuration says a long duration the way people do: "7 days", "5 hours", "10 minutes".
func humanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 48*time.Hour:
		return plural(int64((d+12*time.Hour)/(24*time.Hour)), "day")
	case d >= 2*time.Hour:
		return plural(int64((d+30*time.Minute)/time.Hour), "hour")
	case d >= 2*time.Minute:
		return plural(int64((d+30*time.Second)/time.Minute), "minute")
	default:
		return plural(int64((d+500*time.Millisecond)/time.Second), "second")
	}
}

// mayGetLinks lets the people recorded in a recording and whoever may start recordings in
// the room have its links; anyone else in the room may only see that it exists.
func (st *storeRT) mayGetLinks(ctx context.Context, cc *cmdContext, r *storage.Recording) error {
	if m, err := recorder.ReadManifest(filepath.Join(st.cfg.Recordings.Dir, filepath.Base(r.Folder))); err == nil {
		for _, p := range m.Participants {
			if id.UserID(p.UserID) == cc.sender {
				return nil
			}
		}
	}
	if parts, err := st.db.Parts(ctx, r.ID); err == nil {
		for _, p := range parts {
			if id.UserID(p.UserID) == cc.sender {
				return nil
			}
		}
	}
	if err := st.b.groups.mayRecord(ctx, cc.roomID, cc.sender); err != nil {
		var ue userError
		if errors.As(err, &ue) {
			return userError{Msg: fmt.Sprintf("Sorry %s, the links of %s are for the people recorded in it and for members who may start recordings here.", cc.sender, r.ID)}
		}
		return err
	}
	return nil
}

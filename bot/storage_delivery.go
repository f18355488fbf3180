package bot

import (
	"context"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// linkWait is how long the summary waits for uploads before it is posted anyway (it is
// edited with the links once they are ready).
const linkWait = 2 * time.Minute

// maxSummaryBytes keeps the summary well inside Matrix's 64 KiB event limit.
const maxSummaryBytes = 40 << 10

// recordingEnded posts the summary of a finished recording: duration, participants and
// one line per file with a link. It returns at once; the work (waiting for uploads) runs
// in the background. headline says why the recording ended.
func (b *Bot) recordingEnded(ctx context.Context, roomID id.RoomID, folder string, m recorder.Manifest, headline string, finErr error, announce bool) {
	st := b.st
	if st == nil {
		if announce {
			b.notice(ctx, roomID, strings.TrimSpace(headline+"\n"+summary(m, folder)), "")
		}
		return
	}
	st.wg.Add(1)
	st.posting.Add(1)
	go func() {
		defer st.wg.Done()
		st.deliver(st.ctx, roomID, filepath.Base(folder), &m, headline, finErr, st.posting.Done, announce)
	}()
}

// deliver posts (and, once the uploads are done, edits) the summary of one recording and
// moves it to uploaded and notified. m may be nil (read from the folder). posted, when
// set, is called once the first message is out (or given up): shutdown waits for that.
func (st *storeRT) deliver(ctx context.Context, roomID id.RoomID, folder string, m *recorder.Manifest, headline string, finErr error, posted func(), announce bool) {
	var once sync.Once
	firstDone := func() {
		if posted != nil {
			once.Do(posted)
		}
	}
	defer firstDone()
	log := st.log.With().Str("folder", folder).Stringer("room_id", roomID).Logger()
	rec, err := st.db.RecordingByFolder(ctx, folder)
	if err != nil {
		log.Error().Err(err).Msg("No state for the finished recording; posting a plain summary")
		if m == nil {
			return
		}
		st.b.notice(ctx, roomID, strings.TrimSpace(headline+"\n"+summary(*m, folder)), "")
		return
	}
	// One delivery per recording at a time; deleting the recording ends it.
	st.mu.Lock()
	if _, busy := st.delivering[rec.ID]; busy {
		st.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	st.delivering[rec.ID] = cancel
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		delete(st.delivering, rec.ID)
		st.mu.Unlock()
		cancel()
	}()
	if rec.Status.Gone() {
		return
	}
	if headline == "" {
		headline = rec.StopReason // kept from an attempt that could not be posted
	}
	if finErr != nil {
		headline = strings.TrimSpace(headline + "\nSome files could not be finalised cleanly; they stay playable up to their last second.")
	}
	if st.up != nil {
		// Wait for the links, but not past the start of a shutdown: then the summary goes
		// out with what is ready, and the next run adds the rest.
		wctx, cancel := context.WithTimeout(ctx, linkWait)
		stop := context.AfterFunc(st.drainCtx, cancel)
		_ = st.up.Wait(wctx, rec.ID)
		stop()
		cancel()
	}
	if ctx.Err() != nil {
		return
	}
	complete := st.uploadsComplete(ctx, rec.ID)
	if complete && st.s3 != nil {
		complete = st.uploadManifest(ctx, rec) == nil
	}
	if !announce {
		return // bot.notices is off: the uploads go on, nothing is posted
	}
	withLinks := !st.cfg.Storage.LinksByDM
	text, htmlText := st.summaryText(ctx, rec, headline, complete, withLinks)
	evt := st.sendSummary(ctx, roomID, text, htmlText, id.EventID(rec.SummaryEvent))
	if evt == "" && ctx.Err() == nil {
		st.log.Warn().Str("recording", rec.ID).Msg("Could not post the recording summary; retrying while the bot runs")
	}
	rec, err = st.db.ModifyRecording(context.WithoutCancel(ctx), rec.ID, func(r *storage.Recording) {
		if evt != "" {
			r.SummaryEvent = string(evt)
		} else {
			r.StopReason = headline
		}
		switch {
		case r.Status.Gone() || r.Status.Live():
		case evt == "":
			r.Status = storage.RecordingFailedNotify
		case complete:
			r.Status = storage.RecordingNotified
		case st.s3 == nil:
			r.Status = storage.RecordingNotified
		}
	})
	firstDone()
	if evt != "" {
		st.mu.Lock()
		delete(st.notifyRetry, rec.ID)
		st.mu.Unlock()
	}
	if err != nil || complete || st.up == nil || evt == "" {
		return
	}
	// Uploads are still going (the store is slow or down): edit the summary once they
	// are done, however long that takes (or until the recording is deleted).
	if withLinks {
		log.Info().Msg("Summary posted before every upload finished; it will be edited with the links")
	}
	for ctx.Err() == nil {
		if err := st.up.Wait(ctx, rec.ID); err != nil {
			return
		}
		if cur, err := st.db.Recording(ctx, rec.ID); err != nil || cur.Status.Gone() {
			return // deleted meanwhile: nothing is left to link to
		}
		if st.uploadsComplete(ctx, rec.ID) && st.uploadManifest(ctx, rec) == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(st.uploadPoll):
		}
	}
	if ctx.Err() != nil {
		return // shutdown or deletion: the next start finishes (or nothing is left)
	}
	if withLinks {
		text, htmlText = st.summaryText(ctx, rec, headline, true, true)
		if st.sendSummary(ctx, roomID, text, htmlText, evt) == "" {
			return // stays uploaded: retried at the next start
		}
	}
	if _, err := st.db.ModifyRecording(context.WithoutCancel(ctx), rec.ID, func(r *storage.Recording) {
		if !r.Status.Gone() && !r.Status.Live() {
			r.Status = storage.RecordingNotified
		}
	}); err != nil {
		log.Warn().Err(err).Msg("Could not mark the recording notified")
	}
}

// uploadsComplete reports whether every file of a recording that exists is confirmed in
// object storage (true without object storage).
func (st *storeRT) uploadsComplete(ctx context.Context, recID string) bool {
	if st.s3 == nil {
		return true
	}
	parts, err := st.db.Parts(ctx, recID)
	if err != nil {
		return false
	}
	ups, err := st.db.Uploads(ctx, recID)
	if err != nil {
		return false
	}
	byFile := map[string]*storage.Upload{}
	for _, u := range ups {
		byFile[u.File] = u
	}
	for _, p := range parts {
		if p.Status == storage.PartFailedWrite {
			continue
		}
		u := byFile[p.File]
		if u == nil || (u.Status != storage.UploadConfirmed && u.Status != storage.UploadFailed) {
			return false
		}
	}
	return true
}

// uploadManifest copies the manifest (which by now says where every file went) next to
// the files, and marks the recording uploaded.
func (st *storeRT) uploadManifest(ctx context.Context, rec *storage.Recording) error {
	st.manifests.Lock()
	data, err := os.ReadFile(filepath.Join(st.cfg.Recordings.Dir, rec.Folder, recorder.ManifestFile))
	st.manifests.Unlock()
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	if _, err := st.s3.Put(ctx, st.s3.Key(rec.Folder, recorder.ManifestFile), data); err != nil {
		st.log.Warn().Err(err).Str("folder", rec.Folder).Msg("Could not upload the manifest; will retry")
		st.m.UploadFailures.Inc()
		return err
	}
	_, err = st.db.ModifyRecording(ctx, rec.ID, func(r *storage.Recording) {
		if r.Status == storage.RecordingSaved || r.Status == storage.RecordingInterrupted || r.Status == storage.RecordingFailedNotify {
			r.Status = storage.RecordingUploaded
		}
	})
	return err
}

// fileLink is how a file is handed out.
type fileLink struct {
	url     string
	pending bool // waiting for its upload
}

// links returns a link per file of a recording, as storage.links says.
func (st *storeRT) links(ctx context.Context, rec *storage.Recording, parts []*storage.Part) map[string]fileLink {
	out := map[string]fileLink{}
	mode := st.cfg.EffectiveLinks()
	var ups map[string]*storage.Upload
	if st.s3 != nil {
		ups = map[string]*storage.Upload{}
		if list, err := st.db.Uploads(ctx, rec.ID); err == nil {
			for _, u := range list {
				ups[u.File] = u
			}
		}
	}
	httpOK := st.cfg.HTTP.Listen != "" && st.cfg.HTTP.PublicURL != ""
	for _, p := range parts {
		if p.Status == storage.PartFailedWrite {
			continue
		}
		httpLink := ""
		if httpOK && st.signer != nil && (!p.LocalDeleted || ups[p.File] != nil) {
			httpLink = st.signer.URL(st.cfg.HTTP.PublicURL, p.Token, p.File, st.now().Add(st.linkExpiry()))
		}
		switch mode {
		case config.LinksPresigned:
			if u := ups[p.File]; u != nil && u.Status == storage.UploadConfirmed {
				link, err := st.s3.Presign(ctx, u.Key, p.File, st.cfg.Storage.S3.PresignExpiry.D())
				if err == nil {
					out[p.File] = fileLink{url: link}
					continue
				}
				st.log.Warn().Err(err).Msg("Could not presign a link")
			}
			out[p.File] = fileLink{url: httpLink, pending: true}
		case config.LinksHTTP:
			out[p.File] = fileLink{url: httpLink}
		}
	}
	return out
}

// summaryText builds the summary in plain text and HTML, with the links when withLinks
// (without them it says how to get them by direct message, storage.links_by_dm).
func (st *storeRT) summaryText(ctx context.Context, rec *storage.Recording, headline string, complete, withLinks bool) (string, string) {
	m, err := recorder.ReadManifest(filepath.Join(st.cfg.Recordings.Dir, rec.Folder))
	if err != nil {
		m = &recorder.Manifest{}
	}
	parts, _ := st.db.Parts(ctx, rec.ID)
	links := map[string]fileLink{}
	if withLinks {
		links = st.links(ctx, rec, parts)
	}
	names := st.memberNames(ctx, id.RoomID(rec.RoomID))
	var t, h strings.Builder
	line := func(plain, rich string) {
		if t.Len() > 0 {
			t.WriteString("\n")
			h.WriteString("<br>")
		}
		t.WriteString(plain)
		h.WriteString(rich)
	}
	if headline != "" {
		line(headline, html.EscapeString(headline))
	}
	dur := time.Duration(m.DurationMs) * time.Millisecond
	head := fmt.Sprintf("Recording saved: %s, %d file(s), %s. Recording id: %s", formatDuration(dur), len(m.Tracks), formatBytes(manifestBytes(*m)), rec.ID)
	line(head, "<b>"+html.EscapeString(head)+"</b>")
	if len(m.Resumes) > 0 {
		s := fmt.Sprintf("The recorder was restarted %d time(s) during the call; the files continue as further parts on the same timeline.", len(m.Resumes))
		line(s, html.EscapeString(s))
	}
	if ps := participantNames(m, names); ps != "" {
		line("Participants: "+ps, "Participants: "+html.EscapeString(ps))
	}
	if len(m.Tracks) == 0 && len(m.Warnings) == 0 {
		line("No media arrived, so there is nothing to listen to.", "No media arrived, so there is nothing to listen to.")
	}
	for _, w := range m.Warnings {
		line("⚠ "+w, "⚠ "+html.EscapeString(w))
	}
	pending := 0
	for i, tr := range m.Tracks {
		if tr.DisplayName == "" {
			tr.DisplayName = names[tr.UserID]
		}
		desc := fileLine(tr)
		l := links[tr.File]
		plain, rich := "• "+desc, "• "+html.EscapeString(desc)
		if l.url != "" {
			plain += " " + l.url
			rich += fmt.Sprintf(` <a href="%s">%s</a>`, html.EscapeString(l.url), html.EscapeString(tr.File))
		} else if l.pending {
			rich += " (uploading…)"
			plain += " (uploading…)"
		}
		if l.pending {
			pending++
		}
		if t.Len()+h.Len()+len(plain)+len(rich) > maxSummaryBytes {
			more := fmt.Sprintf("… and %d more file(s): type %srecordings %s for all links.", len(m.Tracks)-i, st.cfg.Bot.CommandPrefix, rec.ID)
			line(more, html.EscapeString(more))
			break
		}
		line(plain, rich)
	}
	var notes []string
	p := st.cfg.Bot.CommandPrefix
	switch {
	case !withLinks && st.cfg.EffectiveLinks() != config.LinksNone:
		notes = append(notes, fmt.Sprintf("For the links, type %srecordings %s: I send them to you in a direct message (to the people recorded and to whoever may start recordings here).", p, rec.ID))
	case pending > 0 && !complete:
		notes = append(notes, "Uploads are still running; this message gets the links when they are done.")
	case st.cfg.EffectiveLinks() != config.LinksNone && len(links) > 0:
		notes = append(notes, fmt.Sprintf("Links work for %s; type %srecordings %s for new ones.", humanDuration(st.cfg.Storage.S3.PresignExpiry.D()), st.cfg.Bot.CommandPrefix, rec.ID))
	}
	if st.cfg.EffectiveLinks() == config.LinksNone {
		notes = append(notes, "Files are in the folder "+rec.Folder+" on the recorder.")
	}
	if !rec.ExpiresAt.IsZero() {
		notes = append(notes, "The recording will be deleted on "+rec.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC")+".")
	}
	if len(notes) > 0 {
		n := strings.Join(notes, " ")
		line(n, "<i>"+html.EscapeString(n)+"</i>")
	}
	return t.String(), h.String()
}

// memberNames returns the display names of the room's members (best effort: the summary
// names people as the room does when the call did not say).
func (st *storeRT) memberNames(ctx context.Context, roomID id.RoomID) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := map[string]string{}
	resp, err := st.b.client.JoinedMembers(ctx, roomID)
	if err != nil {
		return out
	}
	for u, m := range resp.Joined {
		if m.DisplayName != "" {
			out[string(u)] = m.DisplayName
		}
	}
	return out
}

func participantNames(m *recorder.Manifest, names map[string]string) string {
	seen := map[string]bool{}
	var out []string
	for _, p := range m.Participants {
		if seen[p.UserID] {
			continue
		}
		seen[p.UserID] = true
		if p.DisplayName == "" {
			p.DisplayName = names[p.UserID]
		}
		if p.DisplayName != "" {
			out = append(out, p.DisplayName+" ("+p.UserID+")")
		} else {
			out = append(out, p.UserID)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// fileLine describes one file: who, source, part, codec, length, place and size.
func fileLine(t recorder.FileEntry) string {
	src := sourceNames[t.Source]
	if src == "" {
		src = t.Kind
	}
	codec := strings.ToUpper(t.Codec)
	if t.CodecParams.Width > 0 {
		codec += fmt.Sprintf(" %dx%d", t.CodecParams.Width, t.CodecParams.Height)
	}
	who := t.UserID
	if t.DisplayName != "" {
		who = t.DisplayName
	}
	part := ""
	if t.Part > 1 {
		part = fmt.Sprintf(" (part %d)", t.Part)
	}
	s := fmt.Sprintf("%s %s%s: %s, %s from %s, %s", who, src, part, codec,
		formatDuration(time.Duration(t.DurationMs)*time.Millisecond), formatDuration(time.Duration(t.StartOffsetMs)*time.Millisecond), formatBytes(t.Bytes))
	if t.Stats.PacketsLost > 0 {
		s += fmt.Sprintf(", %d packets lost", t.Stats.PacketsLost)
	}
	return s
}

// sendSummary posts the summary, or edits it when replace is set. It returns the event
// (the original's id for an edit), or "" when sending failed.
func (st *storeRT) sendSummary(ctx context.Context, roomID id.RoomID, text, htmlText string, replace id.EventID) id.EventID {
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: text, Format: event.FormatHTML, FormattedBody: htmlText, Mentions: &event.Mentions{}}
	if replace != "" {
		content.SetEdit(replace)
	}
	var lastErr error
	// mautrix retries each request on 429 and 5xx already; these are attempts on top.
	for attempt := 0; attempt < 3; attempt++ {
		resp, err := st.b.client.SendMessageEvent(ctx, roomID, event.EventMessage, content)
		if err == nil {
			if replace != "" {
				return replace
			}
			return resp.EventID
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(time.Duration(attempt+1) * st.sendBackoff):
		}
	}
	st.log.Error().Err(lastErr).Stringer("room_id", roomID).Msg("Could not post the recording summary")
	return ""
}

// progress edits start notices with the time and size recorded so far.
func (st *storeRT) progress(ctx context.Context) {
	every := st.cfg.Recordings.ProgressInterval.D()
	now := st.now()
	st.mu.Lock()
	var due []*liveRec
	for _, lr := range st.live {
		if lr.startEvent != "" && !lr.stopping && now.Sub(lr.lastEdit) >= every {
			lr.lastEdit = now
			due = append(due, lr)
		}
	}
	st.mu.Unlock()
	for _, lr := range due {
		elapsed := now.Sub(lr.sess.StartedAt())
		size := folderBytes(lr.sess.Folder())
		tracks := 0
		for _, t := range lr.sess.Manifest().Tracks {
			if t.Status == recorder.StatusRecording {
				tracks++
			}
		}
		st.edit(ctx, lr, fmt.Sprintf("⏺ %s recorded so far, %s, %d track(s) live.", formatDuration(elapsed), formatBytes(size), tracks))
	}
}

// folderBytes is the size of the files in a folder.
func folderBytes(folder string) int64 {
	entries, err := os.ReadDir(folder)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// endDelivery ends the delivery of a recording that is being deleted.
func (st *storeRT) endDelivery(recID string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if cancel := st.delivering[recID]; cancel != nil {
		cancel()
	}
	delete(st.notifyRetry, recID)
}

// Summaries that could not be posted (the homeserver was down) are tried again while the
// bot runs, with a pause that doubles up to renotifyMax.
const (
	renotifyEvery = 15 * time.Second
	renotifyFirst = 30 * time.Second
	renotifyMax   = 10 * time.Minute
)

// retryState paces the retries of one summary.
type retryState struct {
	pause time.Duration
	next  time.Time
}

// renotify posts the summaries that could not be posted, each when its pause is over.
func (st *storeRT) renotify(ctx context.Context) {
	recs, err := st.db.RecordingsWithStatus(ctx, storage.RecordingFailedNotify)
	if err != nil {
		return
	}
	now := st.now()
	for _, r := range recs {
		st.mu.Lock()
		_, busy := st.delivering[r.ID]
		rs := st.notifyRetry[r.ID]
		if rs == nil {
			rs = &retryState{pause: renotifyFirst, next: now.Add(renotifyFirst)}
			st.notifyRetry[r.ID] = rs
		}
		due := !busy && !now.Before(rs.next)
		if due {
			rs.next = now.Add(rs.pause)
			rs.pause = min(2*rs.pause, renotifyMax)
		}
		st.mu.Unlock()
		if due {
			st.log.Info().Str("recording", r.ID).Msg("Trying again to post a recording summary")
			st.goDeliver(id.RoomID(r.RoomID), r.Folder, nil, "")
		}
	}
}

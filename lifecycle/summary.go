package lifecycle

import (
	"context"
	"fmt"
	"html"
	"path/filepath"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// maxSummaryBytes keeps the summary well inside Matrix's 64 KiB event limit.
const maxSummaryBytes = 40 << 10

// fileLink is how a file is handed out.
type fileLink struct {
	url     string
	pending bool // waiting for its upload
}

// links returns a link per file of a recording, as storage.links says.
func (lc *Lifecycle) links(ctx context.Context, rec *storage.Recording, parts []*storage.Part) map[string]fileLink {
	out := map[string]fileLink{}
	mode := lc.cfg.EffectiveLinks()
	var ups map[string]*storage.Upload
	if lc.s3 != nil {
		ups = map[string]*storage.Upload{}
		if list, err := lc.db.Uploads(ctx, rec.ID); err == nil {
			for _, u := range list {
				ups[u.File] = u
			}
		}
	}
	httpOK := lc.cfg.HTTP.Listen != "" && lc.cfg.HTTP.PublicURL != ""
	for _, p := range parts {
		if p.Status == storage.PartFailedWrite {
			continue
		}
		httpLink := ""
		if httpOK && lc.signer != nil && (!p.LocalDeleted || ups[p.File] != nil) {
			httpLink = lc.signer.URL(lc.cfg.HTTP.PublicURL, p.Token, p.File, lc.now().Add(lc.linkExpiry()))
		}
		switch mode {
		case config.LinksPresigned:
			if u := ups[p.File]; u != nil && u.Status == storage.UploadConfirmed {
				link, err := lc.s3.Presign(ctx, u.Key, p.File, lc.cfg.Storage.S3.PresignExpiry.D())
				if err == nil {
					out[p.File] = fileLink{url: link}
					continue
				}
				lc.log.Warn().Err(err).Msg("Could not presign a link")
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
func (lc *Lifecycle) summaryText(ctx context.Context, rec *storage.Recording, headline string, complete, withLinks bool) (string, string) {
	m, err := recorder.ReadManifest(filepath.Join(lc.cfg.Recordings.Dir, rec.Folder))
	if err != nil {
		m = &recorder.Manifest{}
	}
	parts, _ := lc.db.Parts(ctx, rec.ID)
	links := map[string]fileLink{}
	if withLinks {
		links = lc.links(ctx, rec, parts)
	}
	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	names := lc.chat.DisplayNames(nctx, id.RoomID(rec.RoomID))
	cancel()
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
	head := fmt.Sprintf("Recording saved: %s, %d file(s), %s. Recording id: %s", FormatDuration(dur), len(m.Tracks), FormatBytes(manifestBytes(*m)), rec.ID)
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
			more := fmt.Sprintf("… and %d more file(s): type %srecordings %s for all links.", len(m.Tracks)-i, lc.cfg.Bot.CommandPrefix, rec.ID)
			line(more, html.EscapeString(more))
			break
		}
		line(plain, rich)
	}
	var notes []string
	p := lc.cfg.Bot.CommandPrefix
	switch {
	case !withLinks && lc.cfg.EffectiveLinks() != config.LinksNone:
		notes = append(notes, fmt.Sprintf("For the links, type %srecordings %s: I send them to you in a direct message (to the people recorded and to whoever may start recordings here).", p, rec.ID))
	case pending > 0 && !complete:
		notes = append(notes, "Uploads are still running; this message gets the links when they are done.")
	case lc.cfg.EffectiveLinks() != config.LinksNone && len(links) > 0:
		notes = append(notes, fmt.Sprintf("Links work for %s; type %srecordings %s for new ones.", HumanDuration(lc.cfg.Storage.S3.PresignExpiry.D()), lc.cfg.Bot.CommandPrefix, rec.ID))
	}
	if lc.cfg.EffectiveLinks() == config.LinksNone {
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

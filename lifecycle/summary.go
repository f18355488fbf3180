package lifecycle

import (
	"context"
	"fmt"
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

// summary is what a room reads when a recording ends: a short message (how long, why it
// ended, who, where the whole recording is) and, in its thread, one line per file with
// its link.
type summary struct {
	top Message
	// files is the thread's message (empty when the recording has no files).
	files Message
}

// msg builds a Message line by line, in plain text and in Markdown.
type msg struct{ text, md strings.Builder }

// line adds a line: its plain text and its Markdown.
func (b *msg) line(plain, md string) {
	if b.text.Len() > 0 {
		b.text.WriteString("\n")
		b.md.WriteString("\n")
	}
	b.text.WriteString(plain)
	b.md.WriteString(md)
}

// say adds a line of plain text (escaped for the Markdown).
func (b *msg) say(plain string) { b.line(plain, EscapeMarkdown(plain)) }

func (b *msg) size() int { return b.text.Len() + b.md.Len() }

func (b *msg) message() Message { return Message{Text: b.text.String(), Markdown: b.md.String()} }

// summarize builds the summary of a recording, with the links when withLinks (without
// them it says how to get them by direct message, storage.links_by_dm). headline says why
// the recording ended; complete whether every upload is done.
func (lc *Lifecycle) summarize(ctx context.Context, rec *storage.Recording, headline string, complete, withLinks bool) summary {
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
	p := lc.cfg.Bot.CommandPrefix
	linksMode := lc.cfg.EffectiveLinks()

	var top msg
	dur := time.Duration(m.DurationMs) * time.Millisecond
	head := fmt.Sprintf("%s long, %s, %s (recording %s).", FormatDuration(dur), Plural(len(m.Tracks), "file"), FormatBytes(manifestBytes(*m)), rec.ID)
	top.line("Recording saved: "+head, "**Recording saved**: "+EscapeMarkdown(head))
	for _, h := range strings.Split(strings.TrimSpace(headline), "\n") {
		if h != "" {
			top.say(h)
		}
	}
	if ps := participantNames(m, names); ps != "" {
		top.say("Recorded: " + ps + ".")
	}
	if n := len(m.Resumes); n > 0 {
		top.say(fmt.Sprintf("The recorder was restarted %s during the call; the files continue as further parts on the same timeline.", Plural(n, "time")))
	}
	for _, w := range m.Warnings {
		top.say(Warning + w)
	}
	if len(m.Tracks) == 0 {
		if len(m.Warnings) == 0 {
			top.say(noMedia)
		}
	} else {
		top.say(lc.whereText(rec))
		switch {
		case !withLinks && linksMode != config.LinksNone:
			top.say(fmt.Sprintf("The files are listed in the thread. For their links, type %srecordings %s: I send them to you in a direct message (to the people recorded and to members who may start recordings here).", p, rec.ID))
		case linksMode != config.LinksNone:
			top.say("The files and their links are in the thread.")
		default:
			top.say("The files are listed in the thread.")
		}
	}
	if !rec.ExpiresAt.IsZero() {
		top.say("The recording will be deleted on " + rec.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC") + ".")
	}
	out := summary{top: top.message()}
	if len(m.Tracks) == 0 {
		return out
	}

	var files msg
	files.say(fmt.Sprintf("Files of recording %s (%s, %s):", rec.ID, Plural(len(m.Tracks), "file"), FormatBytes(manifestBytes(*m))))
	pending := 0
	for i, tr := range m.Tracks {
		if tr.DisplayName == "" {
			tr.DisplayName = names[tr.UserID]
		}
		desc := fileLine(tr)
		l := links[tr.File]
		plain, md := "• "+desc, "• "+EscapeMarkdown(desc)
		switch {
		case l.url != "":
			plain += ": " + l.url
			md += ": " + MarkdownLink(tr.File, l.url)
		case l.pending:
			plain += " (uploading…)"
			md += " (uploading…)"
		}
		if l.pending {
			pending++
		}
		if files.size()+len(plain)+len(md) > maxSummaryBytes {
			more := strings.Replace(Plural(len(m.Tracks)-i, "file"), " ", " more ", 1)
			files.say(fmt.Sprintf("… and %s: a message has room for no more lines. All of them are %s.", more, lc.whereShort(rec)))
			break
		}
		files.line(plain, md)
	}
	switch {
	case !withLinks && linksMode != config.LinksNone:
		files.say(fmt.Sprintf("For the links, type %srecordings %s: I send them to you in a direct message.", p, rec.ID))
	case pending > 0 && !complete:
		files.say("Uploads are still running; this message gets the links when they are done.")
	case linksMode != config.LinksNone && len(links) > 0:
		files.say(fmt.Sprintf("Links work for %s; type %srecordings %s for new ones.", HumanDuration(lc.linkExpiry()), p, rec.ID))
	}
	out.files = files.message()
	return out
}

// whereText says where the whole recording is: its folder on the recorder and, with
// object storage, the prefix its copies are under.
func (lc *Lifecycle) whereText(rec *storage.Recording) string {
	return "Where: " + lc.whereShort(rec) + "."
}

func (lc *Lifecycle) whereShort(rec *storage.Recording) string {
	local := "in the folder " + rec.Folder + " on the recorder"
	if lc.s3 == nil {
		return local
	}
	remote := "in object storage under s3://" + lc.s3.Bucket() + "/" + lc.s3.FolderPrefix(rec.Folder)
	if lc.cfg.Storage.S3.DeleteLocalAfterUpload {
		return remote // the local copies go once they are confirmed there
	}
	return local + " and " + remote
}

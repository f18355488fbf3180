package lifecycle

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// The summary is a short message (how long, why it ended, who, where the recording is)
// and the files go in its thread, each with its length and where it starts on the
// call's timeline, in SI units, counted in words.
func TestSummaryIsAMessageAndAThread(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.HTTP.Listen, c.HTTP.PublicURL = "127.0.0.1:0", "https://rec.example.org"
	})
	recID := e.finishedRecording(t, alice)
	ctx := context.Background()
	r, _ := e.lc.db.Recording(ctx, recID)
	e.lc.deliver(ctx, room, r.Folder, nil, "Call ended: alice hung up.", nil, nil, true)
	msgs := e.chat.messages(room)
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want the summary and its thread: %+v", len(msgs), msgs)
	}
	top, files := msgs[0], msgs[1]
	for _, want := range []string{"Recording saved: 0:30 long, 1 file, 7 B (recording " + recID + ").", "Call ended: alice hung up.",
		"Recorded: @alice:example.org.", "Where: in the folder " + r.Folder + " on the recorder.", "in the thread"} {
		if !strings.Contains(top.text, want) {
			t.Errorf("summary lacks %q:\n%s", want, top.text)
		}
	}
	if top.thread != "" || strings.Contains(top.text, "https://") || strings.Contains(top.text, "file(s)") {
		t.Errorf("summary: %+v", top)
	}
	if !strings.HasPrefix(top.markdown, "**Recording saved**") {
		t.Errorf("summary's Markdown: %q", top.markdown)
	}
	if files.thread == "" || files.thread != evtOf(0) {
		t.Errorf("the files are not in the summary's thread: %+v", files)
	}
	line := "• @alice:example.org microphone: Opus, 0:30 long, from 0:00, 7 B: https://rec.example.org/download/"
	if !strings.Contains(files.text, line) || !strings.Contains(files.markdown, "[alice\\-D\\-usermedia\\-audio\\.ogg](<https://rec.example.org/download/") {
		t.Errorf("files:\n%s\n%s", files.text, files.markdown)
	}
	if !strings.Contains(files.text, "Links work for 7 days; type !recordings "+recID+" for new ones.") {
		t.Errorf("files: %s", files.text)
	}
}

// evtOf is the event id the fake chat gave its i-th message (edits included).
func evtOf(i int) id.EventID { return id.EventID(fmt.Sprintf("$e%d", i+1)) }

// A summary with more files than a message holds says where all of them are, not a
// command that would refuse most people.
func TestSummaryTooManyFiles(t *testing.T) {
	e := newEnv(t, nil)
	recID := e.finishedRecording(t, alice)
	ctx := context.Background()
	r, _ := e.lc.db.Recording(ctx, recID)
	dir := e.lc.cfg.Recordings.Dir + "/" + r.Folder
	m, err := recorder.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	one := m.Tracks[0]
	for i := 0; i < 2000; i++ {
		tr := one
		tr.File = strings.Repeat("x", 20) + fmt.Sprint(i) + ".ogg"
		tr.Part = i + 2
		m.Tracks = append(m.Tracks, tr)
	}
	if err := recorder.WriteJSONAtomic(dir+"/"+recorder.ManifestFile, m); err != nil {
		t.Fatal(err)
	}
	sum := e.lc.summarize(ctx, r, "", true, true)
	if len(sum.files.Text)+len(sum.files.Markdown) > maxSummaryBytes+2000 {
		t.Errorf("files message of %d bytes", len(sum.files.Text)+len(sum.files.Markdown))
	}
	if !strings.Contains(sum.files.Text, "more files: a message has room for no more lines. All of them are in the folder "+r.Folder+" on the recorder.") {
		t.Errorf("files message ends: %q", sum.files.Text[len(sum.files.Text)-300:])
	}
	if strings.Contains(sum.files.Text, "!recordings "+recID+" for all") {
		t.Errorf("points to a command: %q", sum.files.Text)
	}
	if !strings.Contains(sum.top.Text, "2001 files") {
		t.Errorf("summary: %q", sum.top.Text)
	}
}

func TestUnitsAndCounts(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 8300: "8.3 kB", 12_400_000: "12 MB", 1_900_000_000: "1.9 GB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int]string{0: "0 files", 1: "1 file", 2: "2 files"} {
		if got := Plural(n, "file"); got != want {
			t.Errorf("Plural(%d) = %q", n, got)
		}
	}
	line := fileLine(recorder.FileEntry{UserID: "@b:x", DisplayName: "Bob", Source: recorder.SourceCamera, Kind: "video", Codec: "vp8",
		CodecParams: recorder.CodecParams{Width: 1280, Height: 720}, Part: 2, DurationMs: 30_000, StartOffsetMs: 400_000, Bytes: 5_200_000,
		Stats: recorder.TrackStats{PacketsLost: 1}})
	if want := "Bob camera (part 2): VP8 1280x720, 0:30 long, from 6:40, 5.2 MB, 1 packet lost"; line != want {
		t.Errorf("fileLine = %q, want %q", line, want)
	}
	if got := endedLine(recorder.Manifest{DurationMs: 61_000, Tracks: []recorder.FileEntry{{Bytes: 1500}}}); got != "⏹ Recording ended after 1:01, 1.5 kB in 1 file." {
		t.Errorf("endedLine = %q", got)
	}
}

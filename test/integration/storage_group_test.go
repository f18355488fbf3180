package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/internal/meshpeer"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// TestIntegrationGroupResumesAfterKill: the real binary, SIGKILLed while it records a
// full-mesh group call and started again, tells the room, records the call again in the
// same folder (tracks continue as part 2 on the same timeline) and the state database has
// one recording with one interruption.
func TestIntegrationGroupResumesAfterKill(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	p := startProcess(t, cfg)
	bot := id.UserID(cfg.Matrix.UserID)
	ctx := timeout(t, 4*time.Minute)
	alice := newMeshPeer(t, s, "alice", false)
	zoe := newMeshPeer(t, s, "zoe", true)
	room := meshRoom(t, ctx, alice, bot, zoe)
	conf, err := alice.CreateCall(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	ga, err := alice.Enter(ctx, room, conf, meshpeer.Media{Audio: "tone440.ogg"})
	if err != nil {
		t.Fatal(err)
	}
	gz, err := zoe.Enter(ctx, room, conf, meshpeer.Media{Audio: "tone660.ogg"})
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	if err := alice.SendMessage(ctx, room, "!start"); err != nil {
		t.Fatal(err)
	}
	waitNoticeOf(t, alice, room, since, "recording started", func(b string) bool { return strings.Contains(b, "Recording started") })
	for _, g := range []*meshpeer.Group{ga, gz} {
		if _, err := g.WaitConnected(ctx, bot); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(4 * time.Second)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	entries, _ := os.ReadDir(cfg.Recordings.Dir)
	if len(entries) != 1 {
		t.Fatalf("want one call folder, have %d", len(entries))
	}
	folder := filepath.Join(cfg.Recordings.Dir, entries[0].Name())

	restarted := time.Now()
	startProcess(t, cfg)
	n := waitNoticeOf(t, alice, room, restarted, "resumed", func(b string) bool { return strings.Contains(b, "recording again, in the same folder") })
	t.Logf("notice: %s", n.Body)
	// Wait for the participants' tracks to come back as further parts.
	deadline := time.Now().Add(45 * time.Second)
	for {
		m, err := recorder.ReadManifest(folder)
		parts2 := 0
		if err == nil {
			for _, tr := range m.Tracks {
				if tr.Part >= 2 {
					parts2++
				}
			}
		}
		if parts2 >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tracks did not come back after the restart: %s", describe(m))
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	since = time.Now()
	if err := alice.SendMessage(ctx, room, "!stop"); err != nil {
		t.Fatal(err)
	}
	summary := waitNoticeOf(t, alice, room, since, "summary", func(b string) bool { return strings.Contains(b, "Recording saved") })
	t.Logf("summary:\n%s", summary.Body)
	if entries, _ := os.ReadDir(cfg.Recordings.Dir); len(entries) != 1 {
		t.Fatalf("the resumed recording went to a new folder: %d folders", len(entries))
	}
	m, err := recorder.ReadManifest(folder)
	if err != nil || m.Status != recorder.StatusFinished || len(m.Resumes) != 1 {
		t.Fatalf("manifest after resume: %+v %v", m, err)
	}
	t.Logf("files:\n%s", describe(m))
	ends := map[string]int64{}
	for _, tr := range m.Tracks {
		if tr.Part == 1 {
			ends[tr.Track] = tr.StartOffsetMs + tr.DurationMs
		}
	}
	for _, tr := range m.Tracks {
		checkFile(t, filepath.Join(folder, tr.File), tr.Codec, time.Duration(tr.DurationMs)*time.Millisecond)
		if tr.Part == 2 && tr.StartOffsetMs < ends[tr.Track] {
			t.Errorf("%s starts at %d ms, before part 1 of its track ends (%d ms)", tr.File, tr.StartOffsetMs, ends[tr.Track])
		}
	}
	db := stateDB(t, cfg)
	r, err := db.RecordingByFolder(ctx, filepath.Base(folder))
	if err != nil {
		t.Fatal(err)
	}
	r = waitRecording(t, db, r.ID, 20*time.Second, "notified", func(r *storage.Recording) bool { return r.Status == storage.RecordingNotified })
	if r.Interruptions != 1 || r.Kind != "group" {
		t.Errorf("recording row: %+v", r)
	}
	parts, _ := db.Parts(ctx, r.ID)
	if len(parts) != len(m.Tracks) {
		t.Errorf("%d part rows for %d files", len(parts), len(m.Tracks))
	}
}

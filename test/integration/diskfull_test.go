package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// TestIntegrationRecorderDiskFullRetry: the recordings disk (an 8 MiB tmpfs, with the
// min_free_space guard off) fills up completely in the middle of a 1:1 call and is freed
// again five seconds later. The call goes on; the audio file that was being written ends
// there, is repaired and plays, and the track goes on in a second file that plays to the
// end of the call. Before, the track wrote nothing more after the first write error.
func TestIntegrationRecorderDiskFullRetry(t *testing.T) {
	dir := smallDisk(t, 8<<20)
	s := homeserver(t)
	cfg := botConfig(t, s)
	cfg.Recordings.Dir = dir
	cfg.Recordings.MinFreeSpace = 0
	rb := startBot(t, cfg)
	alice := newCaller(t, s, "alice")
	room, ctx := directRoom(t, rb, alice, false, 3*time.Minute)
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440})
	waitNotice(t, alice, room, start, 20*time.Second, "Recording this call")
	time.Sleep(3 * time.Second)
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	full := time.Now()
	time.Sleep(5 * time.Second)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	// Tries 1, 2, 4 and 8 s after the error: the second file starts at most 8 s after
	// the disk was freed.
	time.Sleep(12 * time.Second)
	end := time.Now()
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, alice, room, start)
	folder, m := finishedFolder(t, rb)
	t.Logf("files:\n%s", describe(m))
	t.Logf("warnings: %q", m.Warnings)
	audio := trackBySource(m, recorder.SourceMicrophone)
	if len(audio) != 2 {
		t.Fatalf("want the file the full disk ended and the one after it, got %d", len(audio))
	}
	first, second := audio[0], audio[1]
	if first.Part > second.Part {
		first, second = second, first
	}
	if first.Status != recorder.StatusInterrupted || !strings.Contains(first.EndReason, "no space left on device") || !strings.Contains(first.EndReason, "repaired") {
		t.Errorf("%s: %s (%s), want interrupted by the full disk and repaired", first.File, first.Status, first.EndReason)
	}
	t0 := m.StartedAt
	firstEnd := t0.Add(time.Duration(first.StartOffsetMs+first.DurationMs) * time.Millisecond)
	if firstEnd.Before(full.Add(-2*time.Second)) || firstEnd.After(full.Add(2*time.Second)) {
		t.Errorf("%s ends at %s; the disk filled at %s", first.File, firstEnd.Format("15:04:05.000"), full.Format("15:04:05.000"))
	}
	checkFile(t, filepath.Join(folder, first.File), "opus", time.Duration(first.DurationMs)*time.Millisecond)
	secondStart := t0.Add(time.Duration(second.StartOffsetMs) * time.Millisecond)
	if second.Status != recorder.StatusComplete || secondStart.Before(freed) || secondStart.After(freed.Add(9*time.Second)) {
		t.Errorf("%s: %s from %s; the disk was freed at %s", second.File, second.Status, secondStart.Format("15:04:05.000"), freed.Format("15:04:05.000"))
	}
	if secondEnd := secondStart.Add(time.Duration(second.DurationMs) * time.Millisecond); secondEnd.Before(end.Add(-time.Second)) {
		t.Errorf("%s ends at %s, before the hangup at %s", second.File, secondEnd.Format("15:04:05.000"), end.Format("15:04:05.000"))
	}
	checkFile(t, filepath.Join(folder, second.File), "opus", time.Duration(second.DurationMs)*time.Millisecond)
	var failed, resumed bool
	for _, w := range m.Warnings {
		failed = failed || strings.Contains(w, "writing the microphone track failed")
		resumed = resumed || strings.Contains(w, "goes on in "+second.File)
	}
	if !failed || !resumed {
		t.Errorf("warnings %q, want the failure and the new file", m.Warnings)
	}
}

// fillDisk writes a file until the disk it is on is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// The last partial chunk may have left a few KiB: fill them too.
	small := make([]byte, 512)
	for {
		if _, err := f.Write(small); err != nil {
			return
		}
	}
}

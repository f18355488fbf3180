package bot

import (
	"strings"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/lifecycle"
)

// In a fleet !status names the instance of each recording in the room and the one that
// answered.
func TestFleetStatusText(t *testing.T) {
	at := time.Date(2026, 12, 6, 14, 3, 4, 0, time.UTC)
	got := fleetStatusText("rec-a", "DEVA", []string{"Recording (mesh) since 14:03:04 UTC"}, []lifecycle.RecordingOwner{
		{ID: "r1", Folder: "/rec/f1", StartedAt: at, Instance: "rec-a"},
		{ID: "r2", Folder: "f2", StartedAt: at, Instance: "rec-b"},
		{ID: "r3", Folder: "f3", StartedAt: at, Instance: "rec-c", Expired: true},
		{ID: "r4", Folder: "f4", StartedAt: at},
		{ID: "r5", Folder: "f5", StartedAt: at, Local: true},
	}, false)
	want := strings.Join([]string{
		"Recording (mesh) since 14:03:04 UTC",
		"Recordings in this room, by instance:",
		"• r1 (folder f1, since 14:03:04 UTC): instance rec-a (this one)",
		"• r2 (folder f2, since 14:03:04 UTC): instance rec-b",
		"• r3 (folder f3, since 14:03:04 UTC): instance rec-c stopped renewing it; another instance takes it over",
		"• r4 (folder f4, since 14:03:04 UTC): no instance holds it right now",
		"• r5 (folder f5, since 14:03:04 UTC): instance rec-a (this one)",
		"Answered by instance rec-a (device DEVA).",
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := fleetStatusText("rec-b", "DEVB", nil, nil, false); got != "Nothing is being recorded in this room.\nAnswered by instance rec-b (device DEVB)." {
		t.Errorf("nothing: %q", got)
	}
	if got := fleetStatusText("rec-b", "DEVB", nil, nil, true); !strings.Contains(got, "the shared database did not answer") || strings.Contains(got, "Nothing is being recorded") {
		t.Errorf("database down: %q", got)
	}
}

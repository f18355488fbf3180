package bot

import (
	"context"
	"fmt"
	"os"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/lifecycle"
)

// fleetStatus is !status's answer in a fleet (database.type postgres): what this
// instance records in the room (local, the lines of a single instance's !status), then
// every live recording of the room in the shared database with the instance that holds
// its lease, and which instance and device answered.
func (b *Bot) fleetStatus(ctx context.Context, room id.RoomID, local []string) string {
	owners, err := b.lc.RecordingOwners(ctx, string(room))
	if err != nil {
		b.log.Error().Err(err).Stringer("room_id", room).Msg("Could not read which instance records what")
	}
	return fleetStatusText(b.instance, b.client.DeviceID, local, owners, err != nil)
}

// fleetStatusText writes fleetStatus's answer; failed says the shared database did not
// answer.
func fleetStatusText(self string, device id.DeviceID, local []string, owners []lifecycle.RecordingOwner, failed bool) string {
	var lines []string
	lines = append(lines, local...)
	if len(owners) > 0 {
		lines = append(lines, "Recordings in this room, by instance:")
	}
	for _, o := range owners {
		var who string
		switch {
		case o.Instance == self || o.Instance == "" && o.Local:
			who = fmt.Sprintf("instance %s (this one)", self)
		case o.Instance == "":
			who = "no instance holds it right now"
		case o.Expired:
			who = fmt.Sprintf("instance %s stopped renewing it; another instance takes it over", o.Instance)
		default:
			who = "instance " + o.Instance
		}
		lines = append(lines, fmt.Sprintf("• %s (folder %s, since %s): %s", o.ID, lifecycle.FolderName(o.Folder), o.StartedAt.UTC().Format("15:04:05 UTC"), who))
	}
	if failed {
		lines = append(lines, "Which instance records what is not known right now: the shared database did not answer.")
	}
	if len(lines) == 0 {
		lines = append(lines, "Nothing is being recorded in this room.")
	}
	return strings.Join(append(lines, fmt.Sprintf("Answered by instance %s (device %s).", self, device)), "\n")
}

// fileExists reports whether path is a regular file.
func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

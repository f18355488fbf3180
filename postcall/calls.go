package postcall

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/matrix-recorder/matrix-recorder/postcall/export"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// maxScan bounds how many call folders a lookup reads (newest first: folder names start
// with the UTC start time).
const maxScan = 500

// Call is one finished call folder.
type Call struct {
	Folder   string
	Manifest *recorder.Manifest
}

// Latest is the word for "the newest recording of this room".
const Latest = "latest"

// FindCall finds a finished recording of roomID in the recordings root: "latest", a call
// folder's name (as the summary shows it), or a call id. Recordings of other rooms are
// never found, so a room learns nothing about other rooms' calls.
func FindCall(root, roomID, ref string) (Call, error) {
	calls, err := listCalls(root, roomID)
	if err != nil {
		return Call{}, err
	}
	if len(calls) == 0 {
		return Call{}, usererr.Error{Msg: "There is no finished recording of this room."}
	}
	if ref == "" || strings.EqualFold(ref, Latest) {
		return calls[0], nil
	}
	for _, c := range calls {
		if filepath.Base(c.Folder) == ref || c.Manifest.CallID == ref {
			return c, nil
		}
	}
	return Call{}, usererr.Error{Msg: fmt.Sprintf("I found no finished recording %q of this room. Recent ones: %s", short(ref), strings.Join(Recent(calls, 3), ", "))}
}

// RecentCalls lists the newest finished recordings of a room (at most n).
func RecentCalls(root, roomID string, n int) ([]Call, error) {
	calls, err := listCalls(root, roomID)
	if len(calls) > n {
		calls = calls[:n]
	}
	return calls, err
}

// Recent names the newest calls.
func Recent(calls []Call, n int) []string {
	var out []string
	for _, c := range calls {
		if len(out) >= n {
			break
		}
		out = append(out, filepath.Base(c.Folder))
	}
	return out
}

func short(s string) string {
	if r := []rune(s); len(r) > 80 {
		return string(r[:80]) + "…"
	}
	return s
}

// listCalls returns the room's finished call folders, newest first.
func listCalls(root, roomID string) ([]Call, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("read the recordings folder: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && export.SafeName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	if len(names) > maxScan {
		names = names[:maxScan]
	}
	var calls []Call
	for _, n := range names {
		folder := filepath.Join(root, n)
		m, err := recorder.ReadManifest(folder)
		if err != nil || m.RoomID != roomID {
			continue
		}
		if m.Status == recorder.StatusRecording {
			continue // still being recorded (or resumed): never touched
		}
		calls = append(calls, Call{Folder: folder, Manifest: m})
	}
	sort.SliceStable(calls, func(i, j int) bool { return calls[i].Manifest.StartedAt.After(calls[j].Manifest.StartedAt) })
	return calls, nil
}

// errLive is returned when a manifest turned out to be live again.
var errLive = errors.New("the recording is running again in this folder")

package storage

import (
	"context"
	"testing"
)

func TestInviterAndKeptBytes(t *testing.T) { eachEngine(t, testInviterAndKeptBytes) }

func testInviterAndKeptBytes(t *testing.T, e engine) {
	d := e.open(t)
	ctx := context.Background()
	if who, err := d.Inviter(ctx, "!r:x"); err != nil || who != "" {
		t.Fatalf("unknown room: %q %v", who, err)
	}
	if err := d.SetInviter(ctx, "!r:x", "@a:x"); err != nil {
		t.Fatal(err)
	}
	if err := d.SetInviter(ctx, "!r:x", "@b:x"); err != nil {
		t.Fatal(err)
	}
	if who, _ := d.Inviter(ctx, "!r:x"); who != "@b:x" {
		t.Errorf("inviter %q, want the latest", who)
	}
	add := func(room, folder string, status RecordingStatus, parts ...*Part) {
		r := &Recording{RoomID: room, CallID: folder, Kind: "1:1", Folder: folder}
		if err := d.CreateRecording(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.Status = status
		if err := d.UpdateRecording(ctx, r); err != nil {
			t.Fatal(err)
		}
		for i, p := range parts {
			p.RecordingID, p.Track, p.Part, p.UserID, p.Kind, p.Codec = r.ID, "t", i+1, "@a:x", "audio", "opus"
			if err := d.SavePart(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("!r:x", "f1", RecordingNotified, &Part{File: "a", Bytes: 100, Status: PartSaved}, &Part{File: "b", Bytes: 50, Status: PartSaved, LocalDeleted: true})
	add("!r:x", "f2", RecordingActive, &Part{File: "a", Bytes: 1000, Status: PartActive}) // live: counted from its folder
	add("!r:x", "f3", RecordingDeleted, &Part{File: "a", Bytes: 1000, Status: PartDeleted})
	add("!s:x", "f4", RecordingSaved, &Part{File: "a", Bytes: 7, Status: PartSaved})
	got, err := d.KeptBytesByRoom(ctx, []string{"!r:x", "!s:x", "!t:x"})
	if err != nil {
		t.Fatal(err)
	}
	if got["!r:x"] != 100 || got["!s:x"] != 7 || got["!t:x"] != 0 {
		t.Errorf("kept bytes %v", got)
	}
}

package storage

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// testdata/state_v3.db was written by the storage code of 2026-12-06 (schema version 3 in
// PRAGMA user_version, before dbutil; testdata/make_state_v3.go.txt made it): a saved
// recording with an upload in progress, a live 1:1 recording, an inviter, an opt-out and
// a name mark. Today's code opens that data_dir in place: the version carries over, the
// new migrations run, and every row reads back and can be written.
func TestUpgradeInPlaceFromVersion3(t *testing.T) {
	ctx := context.Background()
	data, err := os.ReadFile(filepath.Join("testdata", "state_v3.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	log := zerolog.New(&logged)
	d, err := OpenConfig(ctx, Config{Engine: SQLite, Path: path, Log: &log})
	if err != nil {
		t.Fatalf("open a version 3 data_dir: %v", err)
	}
	// The operator sees the upgrade: from the version the old code kept, one step.
	if !strings.Contains(logged.String(), `"from":3,"to":4`) || strings.Contains(logged.String(), `"from":0`) {
		t.Errorf("upgrade log:\n%s", logged.String())
	}
	var v int
	if err := d.db.QueryRow(ctx, "SELECT version FROM "+versionTable).Scan(&v); err != nil || v != len(d.db.UpgradeTable) || v < 4 {
		t.Fatalf("schema version %d %v, want %d", v, err, len(d.db.UpgradeTable))
	}

	r, err := d.Recording(ctx, "z9rep7sx")
	if err != nil || r.Status != RecordingSaved || r.CallID != "call-1" || r.Participants != 2 || r.Bytes != 4196 ||
		!r.ExpiresAt.Equal(time.UnixMilli(1_760_000_000_000).Add(720*time.Hour)) {
		t.Fatalf("saved recording: %+v %v", r, err)
	}
	parts, err := d.Parts(ctx, r.ID)
	if err != nil || len(parts) != 2 || parts[0].DisplayName != "Alice" || parts[0].LocalDeleted || !parts[1].LocalDeleted {
		t.Fatalf("parts: %+v %v", parts, err)
	}
	if kept, err := d.KeptBytesByRoom(ctx, []string{"!room:x"}); err != nil || kept["!room:x"] != 4096 {
		t.Errorf("kept bytes %v %v", kept, err)
	}
	u, err := d.UploadOf(ctx, r.ID, "alice.ogg")
	if err != nil || u.Status != UploadUploading || u.UploadID != "mp-1" || u.Attempts != 2 {
		t.Fatalf("upload: %+v %v", u, err)
	}
	if cs, err := d.Chunks(ctx, u.ID); err != nil || len(cs) != 2 || cs[1].Offset != 5<<20 || cs[1].Size != 1234 {
		t.Errorf("chunks: %+v %v", cs, err)
	}
	if who, err := d.Inviter(ctx, "!room:x"); err != nil || who != "@alice:x" {
		t.Errorf("inviter %q %v", who, err)
	}
	if outs, err := d.OptOuts(ctx); err != nil || len(outs) != 1 || outs[0].UserID != "@dave:x" {
		t.Errorf("opt-outs %+v %v", outs, err)
	}
	if marks, err := d.NameMarks(ctx); err != nil || len(marks) != 1 || marks[0] != "!dm:x" {
		t.Errorf("name marks %v %v", marks, err)
	}
	if a, err := d.AnswerOf(ctx, "3su997mt"); err != nil || a.Caller != "@carol:x" {
		t.Errorf("answer %+v %v", a, err)
	}
	// The crash the old process left: its live recording is found.
	live, err := d.MarkInterrupted(ctx)
	if err != nil || len(live) != 1 || live[0].ID != "3su997mt" {
		t.Fatalf("mark interrupted: %+v %v", live, err)
	}
	// New rows next to the old ones, and the new table.
	n := &Recording{RoomID: "!room:x", CallID: "call-3", Kind: "livekit", Folder: "new"}
	if err := d.CreateRecording(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := d.SavePart(ctx, &Part{RecordingID: n.ID, File: "a.ogg", Track: "a", Part: 1, UserID: "@a:x", Kind: "audio", Codec: "opus",
		Status: PartSaved, Bytes: 10}); err != nil {
		t.Fatal(err)
	}
	if l, err := d.AcquireLease(ctx, "recording:"+n.ID, "i1", time.Minute); err != nil || !l.Held("i1") {
		t.Fatalf("lease on an upgraded database: %+v %v", l, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Opened again: nothing to migrate, everything there.
	d, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if l, err := d.RecordingsInRoom(ctx, "!room:x", 10); err != nil || len(l) != 2 {
		t.Errorf("recordings after reopening: %+v %v", l, err)
	}
}

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMigrateIsIdempotentAndRefusesNewer(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		d := e.open(t)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		d2 := e.open(t)
		var v int
		if err := d2.db.QueryRow(ctx, "SELECT version FROM "+versionTable).Scan(&v); err != nil || v != len(d2.db.UpgradeTable) {
			t.Fatalf("schema version %d %v, want %d", v, err, len(d2.db.UpgradeTable))
		}
		if _, err := d2.db.Exec(ctx, "UPDATE "+versionTable+" SET version = 99, compat = 99"); err != nil {
			t.Fatal(err)
		}
		_ = d2.Close()
		if d3, err := OpenConfig(ctx, e.cfg); err == nil {
			_ = d3.Close()
			t.Fatal("opened a database from a newer version")
		}
	})
}

// A SQLite database of a newer release that still kept its version in user_version.
func TestRefusesNewerUserVersion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	_ = raw.Close()
	if d, err := Open(ctx, path); err == nil {
		_ = d.Close()
		t.Fatal("opened a database from a newer version")
	}
}

func TestRecordingLifecycle(t *testing.T) { eachEngine(t, testRecordingLifecycle) }

func testRecordingLifecycle(t *testing.T, e engine) {
	ctx := context.Background()
	d := e.open(t)
	r := &Recording{RoomID: "!r:x", CallID: "c1", Kind: "1:1", Folder: "20250101T000000Z_r_c1"}
	if err := d.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	if len(r.ID) != 8 || r.Status != RecordingStarted {
		t.Fatalf("new recording: %+v", r)
	}
	// Creating again for the same folder returns the same row (a resume).
	again := &Recording{RoomID: "!r:x", CallID: "c2", Kind: "1:1", Folder: r.Folder}
	if err := d.CreateRecording(ctx, again); err != nil || again.ID != r.ID {
		t.Fatalf("second create: %v, id %s want %s", err, again.ID, r.ID)
	}
	p := &Part{RecordingID: r.ID, File: "a.ogg", Track: "a", Part: 1, UserID: "@a:x", Kind: "audio", Codec: "opus", Status: PartStarted}
	if err := d.SavePart(ctx, p); err != nil {
		t.Fatal(err)
	}
	token := p.Token
	p.Status, p.Bytes, p.SHA256 = PartSaved, 1234, "abc"
	p.Token = ""
	if err := d.SavePart(ctx, p); err != nil {
		t.Fatal(err)
	}
	if p.Token != token {
		t.Errorf("token changed on update: %s -> %s", token, p.Token)
	}
	got, err := d.PartByToken(ctx, token)
	if err != nil || got.Bytes != 1234 || got.Status != PartSaved {
		t.Fatalf("part by token: %+v %v", got, err)
	}
	if _, err := d.PartByToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown token: %v", err)
	}
	if _, err := d.ModifyRecording(ctx, r.ID, func(r *Recording) { r.Status = RecordingActive }); err != nil {
		t.Fatal(err)
	}
	// A crash: the next start marks everything live interrupted.
	live, err := d.MarkInterrupted(ctx)
	if err != nil || len(live) != 1 || live[0].ID != r.ID {
		t.Fatalf("mark interrupted: %v %+v", err, live)
	}
	r2, _ := d.Recording(ctx, r.ID)
	if r2.Status != RecordingInterrupted || r2.Interruptions != 1 || r2.CallID != "c1" {
		t.Errorf("after crash: %+v", r2)
	}
	parts, _ := d.Parts(ctx, r.ID)
	if len(parts) != 1 || parts[0].Status != PartSaved {
		t.Errorf("saved part must stay saved: %+v", parts[0])
	}
	var callStatus string
	_ = d.db.QueryRow(ctx, `SELECT status FROM calls`).Scan(&callStatus)
	if callStatus != string(CallInterrupted) {
		t.Errorf("call status %s", callStatus)
	}
	// Expiry queries.
	r2.Status = RecordingNotified
	r2.ExpiresAt = time.Now().Add(time.Hour)
	if err := d.UpdateRecording(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if due, _ := d.ExpiringBefore(ctx, time.Now()); len(due) != 0 {
		t.Errorf("not yet due: %+v", due)
	}
	if due, _ := d.ExpiringBefore(ctx, time.Now().Add(2*time.Hour)); len(due) != 1 {
		t.Errorf("due: %+v", due)
	}
	list, err := d.RecordingsInRoom(ctx, "!r:x", 10)
	if err != nil || len(list) != 1 {
		t.Errorf("room list: %v %+v", err, list)
	}
}

func TestUploadsAndChunks(t *testing.T) { eachEngine(t, testUploadsAndChunks) }

func testUploadsAndChunks(t *testing.T, e engine) {
	ctx := context.Background()
	d := e.open(t)
	r := &Recording{RoomID: "!r:x", CallID: "c1", Kind: "1:1", Folder: "f"}
	if err := d.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	u, err := d.EnsureUpload(ctx, r.ID, "a.ogg", "bucket", "p/f/a.ogg")
	if err != nil || u.Status != UploadPending {
		t.Fatalf("ensure: %+v %v", u, err)
	}
	u.UploadID, u.Status = "mp-1", UploadUploading
	if err := d.UpdateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	u2, _ := d.EnsureUpload(ctx, r.ID, "a.ogg", "bucket", "p/f/a.ogg")
	if u2.ID != u.ID || u2.UploadID != "mp-1" {
		t.Errorf("ensure must return the existing row: %+v", u2)
	}
	for i := 1; i <= 3; i++ {
		if err := d.PutChunk(ctx, u.ID, Chunk{Number: i, Offset: int64(i-1) * 10, Size: 10, MD5: "m", ETag: "e"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.PutChunk(ctx, u.ID, Chunk{Number: 1, Offset: 0, Size: 10, MD5: "m2", ETag: "e2"}); err != nil {
		t.Fatal(err)
	}
	cs, err := d.Chunks(ctx, u.ID)
	if err != nil || len(cs) != 3 || cs[0].MD5 != "m2" || cs[2].Offset != 20 {
		t.Fatalf("chunks: %+v %v", cs, err)
	}
	if byKey, err := d.UploadByKey(ctx, "bucket", "p/f/a.ogg"); err != nil || byKey.ID != u.ID {
		t.Errorf("by key: %+v %v", byKey, err)
	}
	if err := d.DeleteChunks(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if cs, _ := d.Chunks(ctx, u.ID); len(cs) != 0 {
		t.Errorf("chunks left: %+v", cs)
	}
}

// The state database and its WAL are private to the recorder's user.
func TestDatabaseIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.CreateRecording(context.Background(), &Recording{RoomID: "!r:x", CallID: "c", Kind: "1:1", Folder: "f"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

// The deleted recordings are listed by when they were deleted and by folder, so that an
// instance looks at those deleted since its last look, or at those its disk holds, not at
// every recording ever deleted.
func TestRemovedRecordings(t *testing.T) { eachEngine(t, testRemovedRecordings) }

func testRemovedRecordings(t *testing.T, e engine) {
	ctx := context.Background()
	d := e.open(t)
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	mk := func(folder string, removed time.Time, why Removal) *Recording {
		t.Helper()
		r := &Recording{RoomID: "!r:x", CallID: "c-" + folder, Kind: "1:1", Folder: folder}
		if err := d.CreateRecording(ctx, r); err != nil {
			t.Fatal(err)
		}
		if !removed.IsZero() {
			if _, err := d.MarkRemoved(ctx, r.ID, why, removed); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	old := mk("f-old", base, RemovedByExpiry)
	newer := mk("f-new", base.Add(2*time.Hour), RemovedByRequest)
	mk("f-kept", time.Time{}, 0)
	folders := func(recs []*Recording) string {
		var out []string
		for _, r := range recs {
			out = append(out, r.Folder)
		}
		return strings.Join(out, " ")
	}
	if got, err := d.RemovedSince(ctx, base.Add(time.Hour)); err != nil || folders(got) != "f-new" {
		t.Errorf("removed since an hour after the first: %q %v", folders(got), err)
	}
	if got, err := d.RemovedSince(ctx, base); err != nil || folders(got) != "f-old f-new" {
		t.Errorf("removed since the first: %q %v", folders(got), err)
	}
	many := []string{"f-kept", "f-none"}
	for i := range removedAmongBatch {
		many = append(many, fmt.Sprintf("f-x%d", i))
	}
	many = append(many, "f-new") // in the second batch
	got, err := d.RemovedAmong(ctx, append([]string{"f-old"}, many...))
	if err != nil || len(got) != 2 {
		t.Fatalf("removed among the folders: %q %v", folders(got), err)
	}
	for _, r := range got {
		if r.ID != old.ID && r.ID != newer.ID {
			t.Errorf("listed %+v", r)
		}
	}
	if got, err := d.RemovedAmong(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("removed among no folders: %v %v", got, err)
	}
}

// An upload row deleted (or expired) with its recording is not written any more: an
// upload that ran on elsewhere while the recording was deleted gets ErrUploadGone instead
// of bringing the row back to uploaded.
func TestUpdateUploadLeavesRemovedRows(t *testing.T) {
	eachEngine(t, testUpdateUploadLeavesRemovedRows)
}

func testUpdateUploadLeavesRemovedRows(t *testing.T, e engine) {
	ctx := context.Background()
	d := e.open(t)
	for _, why := range []Removal{RemovedByRequest, RemovedByExpiry} {
		r := &Recording{RoomID: "!r:x", CallID: fmt.Sprint("c-", why), Kind: "1:1", Folder: fmt.Sprint("f-", why)}
		if err := d.CreateRecording(ctx, r); err != nil {
			t.Fatal(err)
		}
		u, err := d.EnsureUpload(ctx, r.ID, "a.ogg", "bucket", "p/"+r.Folder+"/a.ogg")
		if err != nil {
			t.Fatal(err)
		}
		u.UploadID, u.Status = "mp-1", UploadUploading
		if err := d.UpdateUpload(ctx, u); err != nil {
			t.Fatalf("updating a live upload: %v", err)
		}
		if _, err := d.MarkRemoved(ctx, r.ID, why, time.Now()); err != nil {
			t.Fatal(err)
		}
		u.UploadID, u.Status = "", UploadUploaded
		if err := d.UpdateUpload(ctx, u); !errors.Is(err, ErrUploadGone) {
			t.Errorf("%d: updating a removed upload: %v, want ErrUploadGone", why, err)
		}
		if cur, err := d.UploadOf(ctx, r.ID, "a.ogg"); err != nil || !cur.Status.Gone() || cur.UploadID != "mp-1" {
			t.Errorf("%d: the removed upload after the update: %+v %v", why, cur, err)
		}
		if _, err := d.EnsureUpload(ctx, r.ID, "b.ogg", "bucket", "p/"+r.Folder+"/b.ogg"); !errors.Is(err, ErrUploadGone) {
			t.Errorf("%d: a new upload of a removed recording: %v, want ErrUploadGone", why, err)
		}
	}
}

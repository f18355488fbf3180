package storage

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A database written before each table had a status type of its own (schema version 2,
// testdata/schema_v2.sql, a row in every status each table used) opens with the current
// code: every status reads back as its table's typed value, the queries that filter by
// status find the same rows, and what is written now is the text written before.
func TestUpgradeFromVersion2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	script, err := os.ReadFile(filepath.Join("testdata", "schema_v2.sql"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(string(script)); err != nil {
		t.Fatal(err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open a version 2 database: %v", err)
	}
	defer d.Close()

	want := map[string]RecordingStatus{
		"started1": RecordingStarted, "active22": RecordingActive, "stopping": RecordingStopping, "saved333": RecordingSaved,
		"uploaded": RecordingUploaded, "notified": RecordingNotified, "interrup": RecordingInterrupted,
		"failednt": RecordingFailedNotify, "expired4": RecordingExpired, "deleted5": RecordingDeleted,
	}
	for id, status := range want {
		r, err := d.Recording(ctx, id)
		if err != nil || r.Status != status {
			t.Errorf("recording %s: %v %v, want %s", id, r, err, status)
			continue
		}
		if live := id == "started1" || id == "active22" || id == "stopping"; r.Status.Live() != live {
			t.Errorf("%s: Live() = %v", status, !live)
		}
		if gone := id == "expired4" || id == "deleted5"; r.Status.Gone() != gone {
			t.Errorf("%s: Gone() = %v", status, !gone)
		}
	}
	if l, err := d.RecordingsWithStatus(ctx, RecordingFailedNotify, RecordingUploaded); err != nil || len(l) != 2 {
		t.Errorf("by status: %v %v", l, err)
	}
	if l, err := d.ExpiringBefore(ctx, time.UnixMilli(1700000100001)); err != nil || len(l) != 1 || l[0].ID != "notified" {
		t.Errorf("expiring (the expired one is not listed again): %v %v", l, err)
	}

	parts, err := d.Parts(ctx, "saved333")
	if err != nil || len(parts) != 3 {
		t.Fatalf("parts: %v %v", parts, err)
	}
	byFile := map[string]PartStatus{}
	for _, p := range parts {
		byFile[p.File] = p.Status
	}
	if byFile["saved.ogg"] != PartSaved || byFile["failed.webm"] != PartFailedWrite {
		t.Errorf("part statuses %v", byFile)
	}
	if p, err := d.PartByToken(ctx, "tok-expired-0000000000"); err != nil || p.Status != PartExpired || !p.Status.Gone() {
		t.Errorf("expired part: %+v %v", p, err)
	}
	ups, err := d.Uploads(ctx, "saved333")
	if err != nil || len(ups) != 5 {
		t.Fatalf("uploads: %v %v", ups, err)
	}
	wantUp := map[string]UploadStatus{"pending.ogg": UploadPending, "uploading.ogg": UploadUploading, "uploaded.ogg": UploadUploaded,
		"confirmed.ogg": UploadConfirmed, "failed.ogg": UploadFailed}
	for _, u := range ups {
		if u.Status != wantUp[u.File] {
			t.Errorf("upload %s: %s, want %s", u.File, u.Status, wantUp[u.File])
		}
	}
	if u, err := d.UploadByKey(ctx, "b", "k/deleted.ogg"); err != nil || u.Status != UploadDeleted || !u.Status.Gone() {
		t.Errorf("deleted upload: %+v %v", u, err)
	}
	// Kept on disk: saved333's saved.ogg (100; gone.ogg was removed after its upload,
	// failed.webm never existed) and the interrupted recording's file (7).
	if kept, err := d.KeptBytesByRoom(ctx, []string{"!r:x"}); err != nil || kept["!r:x"] != 107 {
		t.Errorf("kept bytes %v %v", kept, err)
	}

	// Start-up after a crash: the live rows become interrupted, saved parts stay saved.
	live, err := d.MarkInterrupted(ctx)
	if err != nil || len(live) != 3 {
		t.Fatalf("mark interrupted: %v %v", live, err)
	}
	parts, _ = d.Parts(ctx, "active22")
	for _, p := range parts {
		if wantP := map[string]PartStatus{"started.ogg": PartInterrupted, "active.ogg": PartInterrupted, "saved.ogg": PartSaved}[p.File]; p.Status != wantP {
			t.Errorf("after the crash %s is %s, want %s", p.File, p.Status, wantP)
		}
	}
	// A deletion marks every table in its own words, written as before.
	if _, err := d.MarkRemoved(ctx, "saved333", RemovedByRequest, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct{ query, want string }{
		{`SELECT status FROM recordings WHERE id = 'saved333'`, "deleted"},
		{`SELECT status FROM recordings WHERE id = 'active22'`, "interrupted"},
		{`SELECT DISTINCT status FROM parts WHERE recording = 'saved333'`, "deleted"},
		{`SELECT DISTINCT status FROM uploads WHERE recording = 'saved333'`, "deleted"},
		{`SELECT status FROM calls WHERE call_id = 'c-live'`, "interrupted"},
	} {
		var got string
		if err := d.db.QueryRow(ctx, q.query).Scan(&got); err != nil || got != q.want {
			t.Errorf("%s: %q %v, want %q", q.query, got, err, q.want)
		}
	}
}

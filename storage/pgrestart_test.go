package storage

import (
	"context"
	"testing"
	"time"
)

// PostgreSQL restarted under an open database (its connections cut): what was written is
// there, and the next writes and lease renewals go through on new connections.
func TestPostgresRestart(t *testing.T) {
	cfg := postgresConfig(t)
	ctx := context.Background()
	d := engine{cfg: cfg}.open(t)
	r := &Recording{RoomID: "!r:x", CallID: "c", Kind: "livekit", Folder: "f"}
	if err := d.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := d.SavePart(ctx, &Part{RecordingID: r.ID, File: "a.ogg", Track: "a", Part: 1, UserID: "@a:x", Kind: "audio",
		Codec: "opus", Status: PartActive}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AcquireLease(ctx, RecordingResource(r.ID), "i1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := pg.Server(t).Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// database/sql drops a connection the server closed and dials again; a statement
	// that was in flight when the server went away is the caller's to retry.
	if err := d.SavePart(ctx, &Part{RecordingID: r.ID, File: "b.ogg", Track: "b", Part: 1, UserID: "@b:x", Kind: "audio",
		Codec: "opus", Status: PartActive}); err != nil {
		t.Fatalf("write after the restart: %v", err)
	}
	if parts, err := d.Parts(ctx, r.ID); err != nil || len(parts) != 2 {
		t.Fatalf("parts after the restart: %+v %v", parts, err)
	}
	if l, err := d.RenewLease(ctx, RecordingResource(r.ID), "i1", time.Minute); err != nil || !l.Held("i1") {
		t.Fatalf("renewal after the restart: %+v %v", l, err)
	}
}

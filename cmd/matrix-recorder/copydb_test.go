package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"

	"github.com/matrix-recorder/matrix-recorder/bot/e2ee"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/internal/devpg"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/cryptostore"
	"github.com/matrix-recorder/matrix-recorder/storage/datadir"
	"github.com/matrix-recorder/matrix-recorder/storage/dbcopy"
	"github.com/matrix-recorder/matrix-recorder/storage/lockfile"
)

var pg devpg.Shared

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }

const copyUser = id.UserID("@recorder:example.org")

// singleRecorder writes the data_dir of a single recorder that ran on SQLite: a recording
// with a part (deleted locally after its upload) and a confirmed upload, a room and an
// opt-out; a crypto store with the device's Olm account, a room's encryption in the
// state store and a pickle key in data_dir. It returns the device's identity key.
func singleRecorder(t *testing.T, dataDir string) (*storage.Recording, id.IdentityKey) {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(dataDir, storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := &storage.Recording{RoomID: "!room:example.org", CallID: "c1", Kind: "mesh", Folder: "2026-12-06_call", StartedAt: time.Now().Add(-time.Hour)}
	if err := db.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Status, r.EndedAt, r.Bytes = storage.RecordingNotified, time.Now(), 1234
	if err := db.UpdateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	p := &storage.Part{RecordingID: r.ID, File: "alice.ogg", Track: "t1", UserID: "@alice:example.org", Kind: "audio", Codec: "opus",
		Status: storage.PartSaved, Bytes: 1234, SHA256: "abc", LocalDeleted: true}
	if err := db.SavePart(ctx, p); err != nil {
		t.Fatal(err)
	}
	u, err := db.EnsureUpload(ctx, r.ID, "alice.ogg", "bucket", "prefix/alice.ogg")
	if err != nil {
		t.Fatal(err)
	}
	u.Status, u.Bytes, u.SHA256 = storage.UploadConfirmed, 1234, "abc"
	if err := db.UpdateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := db.SetInviter(ctx, r.RoomID, "@alice:example.org"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetOptOut(ctx, r.RoomID, "@bob:example.org", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AcquireLease(ctx, storage.RecordingResource(r.ID), "old", time.Minute); err != nil {
		t.Fatal(err)
	}

	pickle, err := e2ee.PickleKey("", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	cdb, err := dbutil.NewWithDialect("file:"+filepath.Join(dataDir, e2ee.CryptoDBName)+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		t.Fatal(err)
	}
	defer cdb.Close()
	if err := cryptostore.UpgradeStores(ctx, cdb, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	cs := crypto.NewSQLCryptoStore(cdb, nil, "", "SINGLEDEV", pickle)
	acc := crypto.NewOlmAccount()
	acc.Shared = true
	if err := cs.PutAccount(ctx, acc); err != nil {
		t.Fatal(err)
	}
	if err := cs.PutNextBatch(ctx, "s42_sync"); err != nil {
		t.Fatal(err)
	}
	ss := sqlstatestore.NewSQLStateStore(cdb, nil, false)
	if err := ss.SetEncryptionEvent(ctx, id.RoomID(r.RoomID), &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}); err != nil {
		t.Fatal(err)
	}
	return r, acc.IdentityKey()
}

func copyConfig(dataDir string) config.Config {
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.Matrix.UserID = string(copyUser)
	return cfg
}

// copy-database moves a single recorder's state and device into an empty PostgreSQL
// database: the rows as they were (booleans, ids, the sync token), the device as the
// instance's with its keys opening under the pickle key now kept in the database, the
// identity sequences past the copied ids; the running instances' leases are not copied;
// a second copy into the same database is refused and changes nothing; a recorder that
// still runs on the data_dir is refused.
func TestCopyDatabase(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	rec, identity := singleRecorder(t, dataDir)
	uri := pg.Database(t)
	var out bytes.Buffer
	if err := copyDatabase(ctx, copyConfig(dataDir), uri, "rec-a", &out); err != nil {
		t.Fatalf("copy: %v\n%s", err, out.String())
	}
	if s := out.String(); !strings.Contains(s, `Device SINGLEDEV of @recorder:example.org is instance "rec-a"'s now`) || !strings.Contains(s, "instance.id:   rec-a") {
		t.Errorf("report:\n%s", s)
	}

	db, err := storage.OpenConfig(ctx, storage.Config{Engine: storage.Postgres, URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Recording(ctx, rec.ID)
	if err != nil || got.Folder != rec.Folder || got.Status != storage.RecordingNotified || got.Bytes != 1234 || got.RoomID != rec.RoomID {
		t.Errorf("recording in PostgreSQL: %+v %v", got, err)
	}
	parts, err := db.Parts(ctx, rec.ID)
	if err != nil || len(parts) != 1 || !parts[0].LocalDeleted || parts[0].SHA256 != "abc" {
		t.Errorf("parts in PostgreSQL: %+v %v", parts, err)
	}
	if ups, err := db.Uploads(ctx, rec.ID); err != nil || len(ups) != 1 || ups[0].Status != storage.UploadConfirmed {
		t.Errorf("uploads in PostgreSQL: %+v %v", ups, err)
	}
	if inv, err := db.Inviter(ctx, rec.RoomID); err != nil || inv != "@alice:example.org" {
		t.Errorf("inviter %q %v", inv, err)
	}
	if outs, err := db.OptOuts(ctx); err != nil || len(outs) != 1 {
		t.Errorf("opt-outs %+v %v", outs, err)
	}
	if _, err := db.Lease(ctx, storage.RecordingResource(rec.ID)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a lease of the stopped recorder was copied: %v", err)
	}
	// New rows get new ids (the identity sequences moved past the copied ones).
	next := &storage.Recording{RoomID: "!other:example.org", CallID: "c2", Kind: "mesh", Folder: "next"}
	if err := db.CreateRecording(ctx, next); err != nil {
		t.Errorf("a new recording after the copy: %v", err)
	}
	if err := db.SavePart(ctx, &storage.Part{RecordingID: next.ID, File: "b.ogg", Track: "t", UserID: "@b:x", Kind: "audio", Codec: "opus", Status: storage.PartSaved}); err != nil {
		t.Errorf("a new part after the copy: %v", err)
	}

	// The instance finds its device, its keys and its sync token.
	s, err := cryptostore.Open(ctx, uri, copyUser, "rec-a", "", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.DB.Close()
	if s.DeviceID != "SINGLEDEV" {
		t.Errorf("instance's device %q", s.DeviceID)
	}
	cs := crypto.NewSQLCryptoStore(s.DB, nil, s.AccountID, "SINGLEDEV", s.PickleKey)
	if dev, err := cs.FindDeviceID(ctx); err != nil || dev != "SINGLEDEV" {
		t.Errorf("crypto store's device %q %v", dev, err)
	}
	acc, err := cs.GetAccount(ctx)
	if err != nil || acc == nil || acc.IdentityKey() != identity || !acc.Shared {
		t.Fatalf("the copied account: %+v %v", acc, err)
	}
	if tok, err := cs.GetNextBatch(ctx); err != nil || tok != "s42_sync" {
		t.Errorf("sync token %q %v", tok, err)
	}
	ss := sqlstatestore.NewSQLStateStore(s.DB, nil, false)
	if enc, err := ss.IsEncrypted(ctx, id.RoomID(rec.RoomID)); err != nil || !enc {
		t.Errorf("the room's encryption in the state store: %v %v", enc, err)
	}

	// Not twice.
	out.Reset()
	err = copyDatabase(ctx, copyConfig(dataDir), uri, "rec-b", &out)
	if !errors.Is(err, dbcopy.ErrNotEmpty) {
		t.Errorf("second copy: %v", err)
	}
	if devs, _ := s.Devices(ctx); len(devs) != 1 {
		t.Errorf("devices after the refused copy: %+v", devs)
	}

	// Not under a running recorder.
	lock, err := datadir.Lock(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Release() }()
	var held *lockfile.HeldError
	if err := copyDatabase(ctx, copyConfig(dataDir), pg.Database(t), "rec-a", &out); !errors.As(err, &held) {
		t.Errorf("copy under a running recorder: %v", err)
	}
}

// A data_dir that never logged in (no crypto store) copies its state alone; a config on
// PostgreSQL already is refused as a usage error.
func TestCopyDatabaseStateOnlyAndUsage(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	db, err := storage.Open(ctx, filepath.Join(dataDir, storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetInviter(ctx, "!r:x", "@a:x"); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	uri := pg.Database(t)
	var out bytes.Buffer
	if err := copyDatabase(ctx, copyConfig(dataDir), uri, "", &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "Device") {
		t.Errorf("a device was reported without a crypto store:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, datadir.InstanceFile)); err != nil {
		t.Errorf("no instance id was made for the copy: %v", err)
	}
	cfg := copyConfig(dataDir)
	cfg.Database = config.Database{Type: config.DatabasePostgres, URI: uri}
	if err := copyDatabase(ctx, cfg, uri, "", &out); !errors.Is(err, errCopyUsage) {
		t.Errorf("config on PostgreSQL: %v", err)
	}
}

// The command line: exactly one of -to and -to-file, a valid -instance, no stray argument
// (exit 2 with the usage); -h prints the usage (exit 0).
func TestCopyDatabaseCommandLine(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, exitOK, "matrix-recorder copy-database"},
		{[]string{"-c", "x.yaml"}, exitConfig, "one of -to and -to-file"},
		{[]string{"-to", "postgres://a/b", "-to-file", "f"}, exitConfig, "one of -to and -to-file"},
		{[]string{"-to", "postgres://a/b", "-instance", "no spaces"}, exitConfig, "-instance"},
		{[]string{"-to", "postgres://a/b", "extra"}, exitConfig, `Unexpected argument "extra"`},
		{[]string{"-to-file", filepath.Join(t.TempDir(), "missing")}, exitConfig, "Could not read the connection string"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"copy-database"}, c.args...), &stdout, &stderr)
		if code != c.code || !strings.Contains(stdout.String()+stderr.String(), c.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s%s", c.args, code, c.code, c.want, stdout.String(), stderr.String())
		}
	}
}

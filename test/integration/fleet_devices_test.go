package integration

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/httpserver"
	"github.com/matrix-recorder/matrix-recorder/internal/caller"
	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
	"github.com/matrix-recorder/matrix-recorder/internal/testmedia"
	"github.com/matrix-recorder/matrix-recorder/storage"
)

// instanceDevices reads the devices of the instances from the shared database, by
// instance, and the crypto store's accounts, by account id.
func instanceDevices(t *testing.T, db *sql.DB) (devices, accounts map[string]id.DeviceID) {
	t.Helper()
	ctx := timeout(t, 20*time.Second)
	read := func(q string) map[string]id.DeviceID {
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]id.DeviceID{}
		for rows.Next() {
			var k string
			var d id.DeviceID
			if err := rows.Scan(&k, &d); err != nil {
				t.Fatal(err)
			}
			out[k] = d
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	return read("SELECT instance, device_id FROM recorder_device"), read("SELECT account_id, device_id FROM crypto_account")
}

// TestIntegrationPostgresDevicePerInstance: on PostgreSQL every instance of the bot
// account is a device of its own, whose crypto store is in the shared database. Two
// binaries run one after the other (one instance at a time may run in this release): the
// first sets up cross-signing in an encrypted room's call, the second (another instance,
// its own data_dir, the recovery key in its config) is another device, cross-signed too;
// both devices' crypto accounts are in PostgreSQL and none in data_dir. The first,
// restarted on a new, empty data_dir, is its old device again (no new device, still
// cross-signed) and decrypts the next call in the encrypted room with the Olm sessions
// kept in the database; its /healthz, metrics and !status name it.
func TestIntegrationPostgresDevicePerInstance(t *testing.T) {
	s := homeserver(t)
	fe := newFleetEnv(t, botConfig(t, s))
	uri, a := fe.uri, fe.base
	a.Instance.ID = "rec-a"
	user := id.UserID(a.Matrix.UserID)
	raw, err := storage.OpenPostgres(uri, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })

	pa := startProcess(t, a)
	alice := newCaller(t, s, "alice")
	ctx := timeout(t, 8*time.Minute)
	room, err := alice.CreateDM(ctx, user, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitMembership(ctx, room, user, event.MembershipJoin); err != nil {
		t.Fatal(err)
	}
	placeShortCall(t, alice, room)
	key, err := os.ReadFile(filepath.Join(a.DataDir, "recovery-key.txt"))
	if err != nil {
		t.Fatalf("the first instance set up no cross-signing: %v", err)
	}
	stopProcess(t, pa)
	devices, _ := instanceDevices(t, raw)
	devA := devices["rec-a"]
	if devA == "" {
		t.Fatalf("no device of rec-a in the database: %v", devices)
	}
	if _, err := os.Stat(filepath.Join(a.DataDir, "crypto.db")); err == nil {
		t.Error("the crypto store is in data_dir on PostgreSQL")
	}

	// Another instance on its own data_dir, with the recovery key the first made.
	b := a
	dir := t.TempDir()
	b.DataDir, b.Recordings.Dir, b.Instance.ID = filepath.Join(dir, "data"), filepath.Join(dir, "recordings"), "rec-b"
	b.Matrix.RecoveryKey = strings.TrimSpace(string(key))
	port, err := devtools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b.HTTP.Listen, b.HTTP.PublicURL = fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d", port)
	pb := startProcess(t, b)
	stopProcess(t, pb)
	devices, accounts := instanceDevices(t, raw)
	devB := devices["rec-b"]
	if devB == "" || devB == devA || len(devices) != 2 {
		t.Fatalf("devices %v: want two, rec-a's and rec-b's", devices)
	}
	if accounts[string(user)+"/rec-a"] != devA || accounts[string(user)+"/rec-b"] != devB || len(accounts) != 2 {
		t.Errorf("crypto accounts in PostgreSQL %v, want rec-a's %s and rec-b's %s", accounts, devA, devB)
	}
	for inst, d := range map[string]id.DeviceID{"rec-a": devA, "rec-b": devB} {
		if !deviceCrossSigned(t, s, a.Matrix.UserID, a.Matrix.Password, d) {
			t.Errorf("%s's device %s is not cross-signed", inst, d)
		}
	}
	if _, err := os.Stat(filepath.Join(b.DataDir, "recovery-key.txt")); err == nil {
		t.Error("the second instance made new cross-signing keys instead of using the recovery key")
	}

	// The first again, on a new, empty data_dir: the same device, and it decrypts.
	a2 := a
	dir2 := t.TempDir()
	a2.DataDir, a2.Recordings.Dir = filepath.Join(dir2, "data"), filepath.Join(dir2, "recordings")
	a2.Matrix.RecoveryKey = b.Matrix.RecoveryKey
	port2, err := devtools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	a2.HTTP.Listen, a2.HTTP.PublicURL = fmt.Sprintf("127.0.0.1:%d", port2), fmt.Sprintf("http://127.0.0.1:%d", port2)
	pa2 := startProcess(t, a2)
	devices, accounts = instanceDevices(t, raw)
	if devices["rec-a"] != devA || len(devices) != 2 || len(accounts) != 2 {
		t.Fatalf("after rec-a's restart on a new data_dir: devices %v, accounts %v; want rec-a still %s", devices, accounts, devA)
	}
	if !strings.Contains(pa2.log.String(), "This device is cross-signed") {
		t.Error("the restarted instance does not report its device cross-signed")
	}
	// /healthz, the metrics and !status name the instance (and its device).
	if code, body := httpGet(t, a2.HTTP.PublicURL+httpserver.HealthPath); code != 200 || !strings.Contains(body, `"instance":"rec-a"`) {
		t.Errorf("/healthz: %d %s", code, body)
	}
	wantInfo := fmt.Sprintf(`matrix_recorder_instance_info{device_id=%q,recorder_instance="rec-a"} 1`, devA)
	if code, body := httpGet(t, a2.HTTP.PublicURL+"/metrics"); code != 200 || !strings.Contains(body, wantInfo) {
		t.Errorf("/metrics: %d, want %s", code, wantInfo)
	}
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440})
	waitNotice(t, alice, room, start, 30*time.Second, "Recording this call")
	// The recording's row is written beside the notice, not before it: ask again until
	// !status lists it.
	var status string
	for range 10 {
		status = waitNotice(t, alice, room, say(t, alice, room, "!status"), 30*time.Second, fmt.Sprintf("Answered by instance rec-a (device %s).", devA))
		if strings.Contains(status, "Recordings in this room, by instance:") {
			break
		}
		time.Sleep(time.Second)
	}
	if !strings.Contains(status, "Recordings in this room, by instance:") || !strings.Contains(status, "instance rec-a (this one)") {
		t.Errorf("!status does not list the room's recording in the shared database as this instance's:\n%s", status)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, alice, room, start)
	if folders := callFolders(t, a2.Recordings.Dir); len(folders) != 1 {
		t.Errorf("call folders of the restarted instance: %v", folders)
	}
	stopProcess(t, pa2)
	checkProcessLog(t, pa2.log.String())
	if _, err := os.Stat(filepath.Join(a2.DataDir, "crypto.db")); err == nil {
		t.Error("the crypto store is in data_dir on PostgreSQL")
	}
}

// TestIntegrationCopyDatabaseToPostgres: a single recorder on SQLite records a call in an
// encrypted room and stops; copy-database moves its data_dir into an empty PostgreSQL
// database; started on PostgreSQL with a new, empty data_dir it is the same device (no new
// one), lists the recording made on SQLite and decrypts and records the next call in the
// encrypted room. A second copy into the now used database is refused.
func TestIntegrationCopyDatabaseToPostgres(t *testing.T) {
	s := homeserver(t)
	fe := newFleetEnv(t, botConfig(t, s))
	uri, single := fe.uri, fe.base
	single.Database = config.Database{Type: config.DatabaseSQLite} // copied to PostgreSQL below
	user := id.UserID(single.Matrix.UserID)

	p := startProcess(t, single)
	alice := newCaller(t, s, "alice")
	ctx := timeout(t, 8*time.Minute)
	room, err := alice.CreateDM(ctx, user, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitMembership(ctx, room, user, event.MembershipJoin); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	call := dial(t, ctx, alice, room, caller.CallOptions{Audio: testmedia.Tone440})
	time.Sleep(2 * time.Second)
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	recID := recordingID.FindStringSubmatch(waitSummary(t, alice, room, start))[1]
	stopProcess(t, p)
	var device id.DeviceID
	local, err := sql.Open("sqlite3", "file:"+filepath.Join(single.DataDir, "crypto.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	if err := local.QueryRow("SELECT device_id FROM crypto_account").Scan(&device); err != nil {
		t.Fatal(err)
	}
	_ = local.Close()

	uriFile := filepath.Join(t.TempDir(), "db-uri")
	if err := os.WriteFile(uriFile, []byte(uri+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	configPath := writeConfig(t, single)
	copyCmd := func() (string, error) {
		out, err := exec.Command(buildBinary(t), "copy-database", "-c", configPath, "-to-file", uriFile, "-instance", "rec-a").CombinedOutput()
		return string(out), err
	}
	out, err := copyCmd()
	if err != nil || !strings.Contains(out, fmt.Sprintf("Device %s of %s is instance \"rec-a\"'s now", device, user)) {
		t.Fatalf("copy-database: %v\n%s", err, out)
	}
	if strings.Contains(out, uri) {
		t.Errorf("copy-database printed the connection string:\n%s", out)
	}

	fleet := single
	fleet.Database = config.Database{Type: config.DatabasePostgres, URI: uri}
	fleet.Instance.ID = "rec-a"
	fleet.DataDir = filepath.Join(t.TempDir(), "data")
	if key, err := os.ReadFile(filepath.Join(single.DataDir, "recovery-key.txt")); err == nil {
		fleet.Matrix.RecoveryKey = strings.TrimSpace(string(key))
	}
	pf := startProcess(t, fleet)
	raw, err := storage.OpenPostgres(uri, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	devices, accounts := instanceDevices(t, raw)
	if devices["rec-a"] != device || len(accounts) != 1 {
		t.Fatalf("after the copy: devices %v, accounts %v; want rec-a as %s, no new device", devices, accounts, device)
	}
	waitNotice(t, alice, room, say(t, alice, room, "!recordings"), 30*time.Second, "• "+recID+": from")
	placeShortCall(t, alice, room)
	if folders := callFolders(t, fleet.Recordings.Dir); len(folders) != 2 {
		t.Errorf("call folders %v: want the one from SQLite and the new one", folders)
	}
	stopProcess(t, pf)
	checkProcessLog(t, pf.log.String())
	if strings.Contains(pf.log.String(), uri) {
		t.Error("the connection string is in the log")
	}

	if out, err := copyCmd(); err == nil || !strings.Contains(out, "not empty") {
		t.Errorf("a second copy into the used database: %v\n%s", err, out)
	}
}

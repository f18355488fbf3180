package cryptostore

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/internal/devpg"
)

var pg devpg.Shared

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }

const fleetUser = id.UserID("@recorder:example.org")

func openTestStore(t *testing.T, uri, instance, pickle string) *Store {
	t.Helper()
	s, err := Open(context.Background(), uri, fleetUser, instance, pickle, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.DB.Close() })
	return s
}

// putAccount stores a new Olm account for device in s's crypto store, as cryptohelper
// does on a first start, and returns its identity key.
func putAccount(t *testing.T, s *Store, device id.DeviceID) id.IdentityKey {
	t.Helper()
	ctx := context.Background()
	cs := crypto.NewSQLCryptoStore(s.DB, nil, s.AccountID, device, s.PickleKey)
	acc := crypto.NewOlmAccount()
	if err := cs.PutAccount(ctx, acc); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDevice(ctx, device); err != nil {
		t.Fatal(err)
	}
	return acc.IdentityKey()
}

// getAccount reads s's device and Olm account back, as a start on a new data_dir does.
func getAccount(t *testing.T, s *Store) (id.DeviceID, id.IdentityKey) {
	t.Helper()
	ctx := context.Background()
	cs := crypto.NewSQLCryptoStore(s.DB, nil, s.AccountID, "", s.PickleKey)
	device, err := cs.FindDeviceID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cs.DeviceID = device
	acc, err := cs.GetAccount(ctx)
	if err != nil {
		t.Fatalf("the account does not unpickle: %v", err)
	}
	if acc == nil {
		return device, ""
	}
	return device, acc.IdentityKey()
}

// Two instances of one account are two devices whose rows do not mix; an instance opened
// again (a new data_dir: nothing but the database) finds its device and its keys with the
// pickle key kept in the database; a second account on the database is apart too.
func TestStoreDevicesApart(t *testing.T) {
	uri := pg.Database(t)
	a := openTestStore(t, uri, "rec-a", "")
	b := openTestStore(t, uri, "rec-b", "")
	if a.AccountID == b.AccountID || a.DeviceID != "" || b.DeviceID != "" {
		t.Fatalf("account ids %q %q, devices %q %q", a.AccountID, b.AccountID, a.DeviceID, b.DeviceID)
	}
	if string(a.PickleKey) == string(b.PickleKey) || len(a.PickleKey) != 64 {
		t.Errorf("pickle keys %q %q: want one generated per instance", a.PickleKey, b.PickleKey)
	}
	keyA := putAccount(t, a, "DEVA")
	keyB := putAccount(t, b, "DEVB")

	again := openTestStore(t, uri, "rec-a", "")
	if again.DeviceID != "DEVA" || string(again.PickleKey) != string(a.PickleKey) {
		t.Fatalf("reopened: device %q, same pickle key %v", again.DeviceID, string(again.PickleKey) == string(a.PickleKey))
	}
	if dev, key := getAccount(t, again); dev != "DEVA" || key != keyA {
		t.Errorf("rec-a's account: %q %q, want DEVA %q", dev, key, keyA)
	}
	if dev, key := getAccount(t, openTestStore(t, uri, "rec-b", "")); dev != "DEVB" || key != keyB {
		t.Errorf("rec-b's account: %q %q, want DEVB %q", dev, key, keyB)
	}
	devs, err := a.Devices(context.Background())
	if err != nil || len(devs) != 2 || devs[0] != (Device{"rec-a", "DEVA"}) || devs[1] != (Device{"rec-b", "DEVB"}) {
		t.Errorf("devices %+v %v", devs, err)
	}

	// Another bot account with an instance of the same name is another device.
	other, err := Open(context.Background(), uri, "@other:example.org", "rec-a", "", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer other.DB.Close()
	if other.AccountID == a.AccountID || other.DeviceID != "" {
		t.Errorf("the other account's instance: %q %q", other.AccountID, other.DeviceID)
	}
	if err := other.SameDevice(context.Background(), "DEVA"); err != nil {
		t.Errorf("another account's device name: %v", err)
	}
}

// An instance may not log in as another instance's device (matrix.device_id or an access
// token copied between instances).
func TestStoreRefusesAnotherInstancesDevice(t *testing.T) {
	uri := pg.Database(t)
	a := openTestStore(t, uri, "rec-a", "")
	b := openTestStore(t, uri, "rec-b", "")
	putAccount(t, a, "DEVA")
	err := b.SameDevice(context.Background(), "DEVA")
	if err == nil || !strings.Contains(err.Error(), `instance "rec-a"`) {
		t.Errorf("rec-b as DEVA: %v", err)
	}
	if err := a.SameDevice(context.Background(), "DEVA"); err != nil {
		t.Errorf("rec-a as its own device: %v", err)
	}
	if err := b.SameDevice(context.Background(), "DEVB"); err != nil {
		t.Errorf("rec-b as a new device: %v", err)
	}
}

// A configured pickle key is used (and not stored); a device made with it needs it again;
// a key configured after the device was made with a generated one does not replace it.
func TestStorePickleKey(t *testing.T) {
	uri := pg.Database(t)
	a := openTestStore(t, uri, "rec-a", "configured-key")
	if string(a.PickleKey) != "configured-key" {
		t.Errorf("pickle key %q", a.PickleKey)
	}
	var stored string
	if err := a.DB.QueryRow(context.Background(), `SELECT pickle_key FROM `+deviceTable+` WHERE instance = 'rec-a'`).Scan(&stored); err != nil || stored != "" {
		t.Errorf("stored pickle key %q %v: a configured key stays out of the database", stored, err)
	}
	if _, err := Open(context.Background(), uri, fleetUser, "rec-a", "", zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "matrix.pickle_key") {
		t.Errorf("without the configured key: %v", err)
	}

	b := openTestStore(t, uri, "rec-b", "")
	b2 := openTestStore(t, uri, "rec-b", "configured-later")
	if string(b2.PickleKey) != string(b.PickleKey) {
		t.Errorf("a key configured later replaced the generated one")
	}
}

// Instances that start at once on an empty database create the tables once.
func TestStoreConcurrentFirstStart(t *testing.T) {
	uri := pg.Database(t)
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			s, err := Open(context.Background(), uri, fleetUser, "rec-"+string(rune('a'+i)), "", zerolog.Nop())
			if err == nil {
				err = s.DB.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// Two instances never set up cross-signing at the same time.
func TestStoreCrossSigningLock(t *testing.T) {
	uri := pg.Database(t)
	a := openTestStore(t, uri, "rec-a", "")
	b := openTestStore(t, uri, "rec-b", "")
	inside := make(chan string, 2)
	release := make(chan struct{})
	done := make(chan error, 2)
	for _, s := range []*Store{a, b} {
		go func() {
			done <- s.WithCrossSigningLock(context.Background(), func() {
				inside <- s.instance
				<-release
			})
		}()
	}
	first := <-inside
	select {
	case second := <-inside:
		t.Fatalf("%s and %s hold the lock at once", first, second)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	<-inside
	for range 2 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

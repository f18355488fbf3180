// Package cryptostore is the database side of a fleet's end-to-end encryption: each
// instance's crypto store (mautrix's SQL crypto and state stores) in the shared PostgreSQL
// database, the table of the instances' devices and pickle keys (recorder_device), and the
// advisory locks that keep instances starting at once apart. The bot sets up encryption on
// it (cryptohelper with the store's database, account id and pickle key).
package cryptostore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"

	"github.com/matrix-recorder/matrix-recorder/storage"
)

// In a fleet (database.type postgres) every instance is a device of the one bot account,
// and each device's crypto store (mautrix's SQL crypto store: the Olm account, Olm and
// Megolm sessions, the cross-signing keys it knows) lives in the shared PostgreSQL
// database, so that an instance started on a new data_dir is still the same device. The
// store keys a device's own rows by an account id: ours is AccountID(user, instance).
// The tables that are not keyed by it (device lists, cross-signing keys of others, room
// state) describe what the one account sees and are shared by its devices.
//
// The devices table (deviceTable) names each instance's device and keeps its pickle key.

// deviceTable lists the devices of the instances on a shared database. Its schema has a
// version table of its own (deviceVersionTable), like the crypto and the state store, so
// that it is upgraded apart from the recorder's state.
const (
	deviceTable        = DeviceTable
	deviceVersionTable = "recorder_device_version"
)

// DeviceTable is the table of the instances' devices (for a copy into the database).
const DeviceTable = "recorder_device"

// sharedLockKey names the PostgreSQL advisory lock held while the crypto store's tables
// are created or upgraded ("mrcrypt"), so that instances that start at once do not race.
const sharedLockKey = 0x6d726372797074

// AccountID is the crypto store's account id of an instance's device: the account and the
// instance, so that two instances, or two bot accounts on one database, never share rows.
func AccountID(user id.UserID, instance string) string {
	return user.String() + "/" + instance
}

// Store is the crypto store of one instance's device in the shared database.
type Store struct {
	// DB is the store's own connection pool, for cryptohelper.NewCryptoHelper (which
	// closes it).
	DB *dbutil.Database
	// AccountID keys this device's rows (cryptohelper's DBAccountID).
	AccountID string
	// PickleKey encrypts this device's keys in the store.
	PickleKey []byte
	// DeviceID is the device this instance had before ("" on its first start).
	DeviceID id.DeviceID

	user     id.UserID
	instance string
}

// Open opens (creating its tables if needed) the crypto store of instance's device
// in the PostgreSQL database uri names. The pickle key is configured
// (matrix.pickle_key) or, the first time, generated and kept in the database with the
// device, so that a new data_dir finds it: the keys at rest are then as safe as the
// database (set matrix.pickle_key to keep them apart).
func Open(ctx context.Context, uri string, user id.UserID, instance, configuredPickle string, log zerolog.Logger) (*Store, error) {
	raw, err := storage.OpenPostgres(uri, 4)
	if err != nil {
		return nil, fmt.Errorf("crypto store: %w", err)
	}
	s, err := open(ctx, raw, user, instance, configuredPickle, log)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("crypto store in PostgreSQL: %w", err), raw.Close())
	}
	return s, nil
}

func open(ctx context.Context, raw *sql.DB, user id.UserID, instance, configuredPickle string, log zerolog.Logger) (*Store, error) {
	db, err := dbutil.NewWithDB(raw, "postgres")
	if err != nil {
		return nil, err
	}
	if err := upgradeShared(ctx, db, log); err != nil {
		return nil, err
	}
	s := &Store{DB: db, AccountID: AccountID(user, instance), user: user, instance: instance}
	if s.PickleKey, s.DeviceID, err = s.device(ctx, configuredPickle, log); err != nil {
		return nil, err
	}
	return s, nil
}

// crossSigningLockKey names the advisory lock held while an instance sets up
// cross-signing ("mrxsign"), so that two instances started at once on an account without
// cross-signing keys do not both create them (the second would replace the first's).
const crossSigningLockKey = 0x6d72787369676e

// WithCrossSigningLock runs fn (the cross-signing set-up) while no other instance of the
// database runs its own.
func (s *Store) WithCrossSigningLock(ctx context.Context, fn func()) error {
	return storage.WithAdvisoryLock(ctx, s.DB.RawDB, crossSigningLockKey, func() error { fn(); return nil })
}

// upgradeShared creates or upgrades the crypto store's, the state store's and the devices
// table under the advisory lock, so that cryptohelper finds them up to date.
func upgradeShared(ctx context.Context, db *dbutil.Database, log zerolog.Logger) error {
	return storage.WithAdvisoryLock(ctx, db.RawDB, sharedLockKey, func() error { return upgradeTables(ctx, db, log) })
}

func upgradeTables(ctx context.Context, db *dbutil.Database, log zerolog.Logger) error {
	if err := UpgradeStores(ctx, db, log); err != nil {
		return err
	}
	zl := dbutil.ZeroLogger(log.With().Str("component", "crypto-store").Logger())
	if err := db.Child(deviceVersionTable, deviceUpgrades, zl).Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade the devices table: %w", err)
	}
	return nil
}

// UpgradeStores brings mautrix's crypto and state store tables in db up to this build's
// version (what cryptohelper does when it opens them).
func UpgradeStores(ctx context.Context, db *dbutil.Database, log zerolog.Logger) error {
	zl := dbutil.ZeroLogger(log.With().Str("component", "crypto-store").Logger())
	cs := crypto.NewSQLCryptoStore(db, zl, "", "", []byte("unused"))
	if err := cs.DB.Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade the crypto store: %w", err)
	}
	if err := sqlstatestore.NewSQLStateStore(db, zl, false).Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade the state store: %w", err)
	}
	return nil
}

// Prepare creates or upgrades the tables of the instances' crypto stores in the
// PostgreSQL database of db (as the first instance's start does), for a copy into it.
func Prepare(ctx context.Context, db *dbutil.Database, log zerolog.Logger) error {
	return upgradeShared(ctx, db, log)
}

// Store tables: the version tables of mautrix's crypto and state stores, and whether a
// table is one of theirs.
const (
	CryptoVersionTable = "crypto_version"
	StateVersionTable  = "mx_version"
)

// StoreTable reports whether a table is mautrix's crypto or state store's (rows, not
// its version table).
func StoreTable(name string) bool {
	return (strings.HasPrefix(name, "crypto_") || strings.HasPrefix(name, "mx_")) && name != CryptoVersionTable && name != StateVersionTable
}

// InsertDevice notes, in a copy into a fleet's database, the device an instance is and
// the pickle key its keys are protected with ("" when matrix.pickle_key is configured).
func InsertDevice(ctx context.Context, tx *sql.Tx, user id.UserID, instance string, device id.DeviceID, pickleKey string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+deviceTable+` (user_id, instance, device_id, pickle_key, created_at) VALUES ($1, $2, $3, $4, $5)`,
		user, instance, device, pickleKey, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("note the instance's device: %w", err)
	}
	return nil
}

var deviceUpgrades = dbutil.BuildUpgradeTable().WithRaw(0, 1, 0, "devices of the instances", dbutil.TxnModeOn,
	func(ctx context.Context, db *dbutil.Database) error {
		_, err := db.Exec(ctx, `CREATE TABLE `+deviceTable+` (
			user_id    TEXT   NOT NULL,
			instance   TEXT   NOT NULL,
			device_id  TEXT   NOT NULL DEFAULT '',
			pickle_key TEXT   NOT NULL DEFAULT '',
			created_at BIGINT NOT NULL,
			PRIMARY KEY (user_id, instance)
		)`)
		return err
	}).Finish()

// device returns this instance's pickle key and its device from before, creating the row
// (with a new pickle key unless one is configured) on the first start.
func (s *Store) device(ctx context.Context, configured string, log zerolog.Logger) ([]byte, id.DeviceID, error) {
	generated := ""
	if configured == "" {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, "", fmt.Errorf("generate a pickle key: %w", err)
		}
		generated = hex.EncodeToString(raw)
	}
	if _, err := s.DB.Exec(ctx, `INSERT INTO `+deviceTable+` (user_id, instance, pickle_key, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, instance) DO NOTHING`, s.user, s.instance, generated, time.Now().UnixMilli()); err != nil {
		return nil, "", fmt.Errorf("note the instance's device: %w", err)
	}
	var stored string
	var device id.DeviceID
	if err := s.DB.QueryRow(ctx, `SELECT pickle_key, device_id FROM `+deviceTable+` WHERE user_id = $1 AND instance = $2`,
		s.user, s.instance).Scan(&stored, &device); err != nil {
		return nil, "", fmt.Errorf("read the instance's device: %w", err)
	}
	switch {
	case stored != "" && configured != "":
		// The device's keys were pickled with the key made on its first start; a key
		// configured since would not open them.
		log.Warn().Str("instance", s.instance).Msg("matrix.pickle_key is ignored for this instance's device: its keys are protected by the pickle key made when it was created (kept in the database)")
		return []byte(stored), device, nil
	case stored != "":
		return []byte(stored), device, nil
	case configured != "":
		return []byte(configured), device, nil
	}
	return nil, "", errors.New("this instance's device was created with matrix.pickle_key, which is not set now: set it to the same key")
}

// DeviceOwner returns the other instance of the account whose device is device ("" if
// none): two instances must never be one device.
func (s *Store) DeviceOwner(ctx context.Context, device id.DeviceID) (string, error) {
	var inst string
	err := s.DB.QueryRow(ctx, `SELECT instance FROM `+deviceTable+` WHERE user_id = $1 AND device_id = $2 AND instance <> $3`,
		s.user, device, s.instance).Scan(&inst)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look for the device's instance: %w", err)
	}
	return inst, nil
}

// SetDevice notes the device this instance logged in as.
func (s *Store) SetDevice(ctx context.Context, device id.DeviceID) error {
	if _, err := s.DB.Exec(ctx, `UPDATE `+deviceTable+` SET device_id = $3 WHERE user_id = $1 AND instance = $2`,
		s.user, s.instance, device); err != nil {
		return fmt.Errorf("note the instance's device: %w", err)
	}
	s.DeviceID = device
	return nil
}

// Device is an instance's device on the shared database.
type Device struct {
	Instance string
	DeviceID id.DeviceID
}

// Devices lists the account's instances and their devices, by instance.
func (s *Store) Devices(ctx context.Context) ([]Device, error) {
	rows, err := s.DB.Query(ctx, `SELECT instance, device_id FROM `+deviceTable+` WHERE user_id = $1 ORDER BY instance`, s.user)
	if err != nil {
		return nil, fmt.Errorf("list the instances' devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		var d Device
		if err := rows.Scan(&d.Instance, &d.DeviceID); err != nil {
			return nil, fmt.Errorf("list the instances' devices: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// SameDevice says why logging in as device would make this instance the device of
// another instance (nil if it would not).
func (s *Store) SameDevice(ctx context.Context, device id.DeviceID) error {
	if device == "" {
		return nil
	}
	other, err := s.DeviceOwner(ctx, device)
	if err != nil || other == "" {
		return err
	}
	return fmt.Errorf("device %s is instance %q's: each instance needs a device of its own "+
		"(leave matrix.device_id empty, or give each instance its own device id or access token)", device, other)
}

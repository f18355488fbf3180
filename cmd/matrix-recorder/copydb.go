package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/bot/e2ee"
	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/storage"
	"github.com/matrix-recorder/matrix-recorder/storage/cryptostore"
	"github.com/matrix-recorder/matrix-recorder/storage/datadir"
	"github.com/matrix-recorder/matrix-recorder/storage/dbcopy"
	"github.com/matrix-recorder/matrix-recorder/storage/lockfile"
)

const copyDatabaseUsage = `Usage:
  matrix-recorder copy-database [-c config.yaml] -to-file FILE [-instance ID]
  matrix-recorder copy-database [-c config.yaml] -to URI [-instance ID]

Copies a single recorder's state from its data_dir (recorder.db: recordings, files,
uploads, rooms, opt-outs; crypto.db: the bot's device, its keys and sessions) into an
empty PostgreSQL database, for running it with database.type postgres (docs/fleet.md).
The config is the single recorder's (database.type sqlite); stop it first. The data_dir
is left as it is. The copied device becomes the device of instance ID (default:
instance.id, or the id kept in data_dir/instance-id); start the recorder on PostgreSQL
with that instance.id.

  -to-file FILE   a file that holds the PostgreSQL connection string
  -to URI         the connection string itself (visible to every user of the machine
                  while the copy runs: prefer -to-file when it holds a password)
  -instance ID    the instance the copied device belongs to
`

// runCopyDatabase is the copy-database command.
func runCopyDatabase(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("matrix-recorder copy-database", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	var path, to, toFile, instance string
	fs.StringVar(&path, "config", "config.yaml", "")
	fs.StringVar(&path, "c", "config.yaml", "")
	fs.StringVar(&to, "to", "", "")
	fs.StringVar(&toFile, "to-file", "", "")
	fs.StringVar(&instance, "instance", "", "")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, copyDatabaseUsage)
		return exitOK
	case err != nil:
		fmt.Fprint(stderr, "\n"+copyDatabaseUsage)
		return exitConfig
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "Unexpected argument %q.\n\n%s", fs.Arg(0), copyDatabaseUsage)
		return exitConfig
	case (to == "") == (toFile == ""):
		fmt.Fprintf(stderr, "Name the target database with one of -to and -to-file.\n\n%s", copyDatabaseUsage)
		return exitConfig
	case instance != "" && !config.ValidInstanceID(instance):
		fmt.Fprintf(stderr, "-instance %q must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.\n", instance)
		return exitConfig
	}
	if toFile != "" {
		data, err := os.ReadFile(toFile)
		if err != nil {
			fmt.Fprintf(stderr, "Could not read the connection string: %v\n", err)
			return exitConfig
		}
		to = strings.TrimSpace(string(data))
	}
	l, err := config.Load(path, config.Options{Environ: os.Environ()})
	if err != nil {
		fmt.Fprintf(stderr, "The config cannot be used: %v\n", err)
		return exitConfig
	}
	ctx, stop := signalContext(zerolog.Nop())
	defer stop()
	err = copyDatabase(ctx, l.Config, to, instance, stdout)
	var held *lockfile.HeldError
	switch {
	case errors.As(err, &held):
		fmt.Fprintf(stderr, "%v.\nStop the recorder first: its state must not change while it is copied.\n", err)
		return exitConfig
	case errors.Is(err, errCopyUsage):
		fmt.Fprintln(stderr, err)
		return exitConfig
	case err != nil:
		fmt.Fprintf(stderr, "Nothing was copied: %v\n", err)
		return exitError
	}
	return exitOK
}

// errCopyUsage marks what the operator asked wrong (exit code 2).
var errCopyUsage = errors.New("copy-database")

// stateSkip are recorder.db's tables that are not copied: the schema version (the
// target's own) and the leases (held by running instances, not by a stopped one).
var stateSkip = map[string]bool{"recorder_version": true, "leases": true}

// copyDatabase copies cfg's data_dir (SQLite) into the empty PostgreSQL database uri
// names, in one transaction: all or nothing. The copied device becomes instance's.
func copyDatabase(ctx context.Context, cfg config.Config, uri, instance string, out io.Writer) error {
	if cfg.Database.Fleet() {
		return fmt.Errorf("%w: the config names a PostgreSQL database already; copy-database reads a single recorder's data_dir (database.type sqlite)", errCopyUsage)
	}
	lock, err := datadir.Lock(cfg.DataDir)
	if err != nil {
		return err
	}
	defer func() { _ = lock.Release() }()
	statePath := filepath.Join(cfg.DataDir, storage.FileName)
	if _, err := os.Stat(statePath); err != nil {
		return fmt.Errorf("%w: no state database in data_dir (%v)", errCopyUsage, err)
	}
	if instance == "" {
		if instance, err = datadir.InstanceID(cfg.DataDir, cfg.Instance.ID); err != nil {
			return err
		}
	}
	log := zerolog.Nop()

	// Both sides at this build's schema versions, so their tables have the same columns.
	sdb, err := storage.Open(ctx, statePath)
	if err != nil {
		return err
	}
	if err := sdb.Close(); err != nil {
		return err
	}
	cryptoPath := filepath.Join(cfg.DataDir, e2ee.CryptoDBName)
	hasCrypto := false
	if _, err := os.Stat(cryptoPath); err == nil {
		hasCrypto = true
		cdb, err := dbutil.NewWithDialect("file:"+cryptoPath+"?_txlock=immediate", "sqlite3-fk-wal")
		if err != nil {
			return fmt.Errorf("open the crypto store: %w", err)
		}
		err = cryptostore.UpgradeStores(ctx, cdb, log)
		if err = errors.Join(err, cdb.Close()); err != nil {
			return err
		}
	}
	tdb, err := storage.OpenConfig(ctx, storage.Config{Engine: storage.Postgres, URI: uri})
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if err := tdb.Close(); err != nil {
		return err
	}
	rawDst, err := storage.OpenPostgres(uri, 2)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer rawDst.Close()
	dst, err := dbutil.NewWithDB(rawDst, "postgres")
	if err != nil {
		return err
	}
	if err := cryptostore.Prepare(ctx, dst, log); err != nil {
		return fmt.Errorf("target: %w", err)
	}

	srcState, err := openReadOnly(statePath)
	if err != nil {
		return err
	}
	defer srcState.Close()
	if err := sameVersion(ctx, srcState, rawDst, "recorder_version"); err != nil {
		return err
	}
	stateTables, err := dbcopy.Tables(ctx, srcState, func(n string) bool { return !stateSkip[n] })
	if err != nil {
		return fmt.Errorf("state database: %w", err)
	}
	var srcCrypto *sql.DB
	var cryptoTables []string
	if hasCrypto {
		if srcCrypto, err = openReadOnly(cryptoPath); err != nil {
			return err
		}
		defer srcCrypto.Close()
		for _, v := range []string{cryptostore.CryptoVersionTable, cryptostore.StateVersionTable} {
			if err := sameVersion(ctx, srcCrypto, rawDst, v); err != nil {
				return err
			}
		}
		if cryptoTables, err = dbcopy.Tables(ctx, srcCrypto, cryptostore.StoreTable); err != nil {
			return fmt.Errorf("crypto store: %w", err)
		}
	}
	all := append(append(append([]string{}, stateTables...), cryptoTables...), cryptostore.DeviceTable, "leases")
	if err := dbcopy.CheckEmpty(ctx, rawDst, all); err != nil {
		return fmt.Errorf("%w: copy-database copies only into an empty database (a new one, or one no recorder has run on)", err)
	}

	user := id.UserID(cfg.Matrix.UserID)
	var device id.DeviceID
	var pickle string
	if hasCrypto {
		if device, err = sourceDevice(ctx, srcCrypto); err != nil {
			return err
		}
		if cfg.Matrix.PickleKey == "" {
			key, err := os.ReadFile(filepath.Join(cfg.DataDir, e2ee.PickleKeyFile))
			if err != nil {
				return fmt.Errorf("read the pickle key that protects the crypto store: %w", err)
			}
			pickle = strings.TrimSpace(string(key))
		}
	}

	tx, err := rawDst.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var report []string
	for _, t := range stateTables {
		n, err := dbcopy.Copy(ctx, srcState, tx, t, nil)
		if err != nil {
			return err
		}
		report = append(report, fmt.Sprintf("%s: %d", t, n))
	}
	if err := dbcopy.ResetIdentities(ctx, tx, stateTables); err != nil {
		return err
	}
	account := cryptostore.AccountID(user, instance)
	for _, t := range cryptoTables {
		// The device's own rows are keyed by its account id: the instance's from now on.
		n, err := dbcopy.Copy(ctx, srcCrypto, tx, t, map[string]any{"account_id": account})
		if err != nil {
			return err
		}
		report = append(report, fmt.Sprintf("%s: %d", t, n))
	}
	if device != "" {
		if err := cryptostore.InsertDevice(ctx, tx, user, instance, device, pickle); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("target: %w", err)
	}

	fmt.Fprintf(out, "Copied %s into %s (rows per table: %s).\n", cfg.DataDir, describeTarget(uri), strings.Join(report, ", "))
	if device != "" {
		fmt.Fprintf(out, "Device %s of %s is instance %q's now.\n", device, user, instance)
	}
	next := fmt.Sprintf(`Next, in the recorder's config (docs/fleet.md):
  database.type: postgres
  database.uri:  the connection string (or MATRIX_RECORDER_DATABASE_URI_FILE)
  instance.id:   %s
  storage.s3:    required on PostgreSQL
Keep recordings.dir: the call folders stay there. data_dir (this one or a new one) no
longer holds the state or the keys. Do not start the old configuration again on SQLite:
the same device would then run twice.
`, instance)
	if device != "" && cfg.Matrix.PickleKey != "" {
		next += "The device's keys are protected by matrix.pickle_key: keep it in the new config.\n"
	}
	fmt.Fprint(out, next)
	return nil
}

// openReadOnly opens a SQLite file of data_dir for reading.
func openReadOnly(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// sameVersion fails unless src's and dst's version table hold one version.
func sameVersion(ctx context.Context, src, dst *sql.DB, table string) error {
	var a, b int
	if err := src.QueryRowContext(ctx, `SELECT version FROM `+table).Scan(&a); err != nil {
		return fmt.Errorf("read the schema version in %s: %w", table, err)
	}
	if err := dst.QueryRowContext(ctx, `SELECT version FROM `+table).Scan(&b); err != nil {
		return fmt.Errorf("read the target's schema version in %s: %w", table, err)
	}
	if a != b {
		return fmt.Errorf("schema versions differ in %s: %d in data_dir, %d in the target (a newer matrix-recorder ran on it?)", table, a, b)
	}
	return nil
}

// sourceDevice is the device of the single recorder's crypto store ("" before its first
// login).
func sourceDevice(ctx context.Context, db *sql.DB) (id.DeviceID, error) {
	rows, err := db.QueryContext(ctx, `SELECT device_id FROM crypto_account`)
	if err != nil {
		return "", fmt.Errorf("read the device: %w", err)
	}
	defer rows.Close()
	var devices []id.DeviceID
	for rows.Next() {
		var d id.DeviceID
		if err := rows.Scan(&d); err != nil {
			return "", fmt.Errorf("read the device: %w", err)
		}
		devices = append(devices, d)
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("read the device: %w", err)
	}
	switch len(devices) {
	case 0:
		return "", nil
	case 1:
		return devices[0], nil
	}
	return "", fmt.Errorf("the crypto store holds %d devices; a single recorder's has one", len(devices))
}

// describeTarget names the target without its password.
func describeTarget(uri string) string {
	if u, err := url.Parse(uri); err == nil && u.Host != "" {
		return "PostgreSQL at " + u.Host + u.Path
	}
	return "PostgreSQL"
}

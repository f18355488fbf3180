// Package storage keeps the recorder's state in a SQL database: SQLite in data_dir
// (data_dir/recorder.db, the default for one instance) or PostgreSQL (database.type
// postgres, shared by the instances of a fleet). It holds the calls the bot recorded,
// their recordings (call folders), every file (part) of them and the copies of those files
// in object storage, each row with an explicit status, and the leases that say which
// instance does which work. The state survives restarts: rows a crash left active are
// found and marked interrupted on the next start. Both engines run the same embedded
// migrations through mautrix's dbutil.
package storage

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	// The PostgreSQL driver.
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-recorder/matrix-recorder/storage/datadir"

	// The SQLite driver (cgo), the one mautrix's crypto store uses too.
	_ "github.com/mattn/go-sqlite3"
)

// FileName is the SQLite database's file name in data_dir.
const FileName = "recorder.db"

// versionTable is where dbutil keeps the schema version. Databases written before dbutil
// kept it in SQLite's user_version; Open carries that over.
const versionTable = "recorder_version"

//go:embed migrations/*.sql
var migrations embed.FS

// Engine is the kind of database.
type Engine int

// Engines.
const (
	EngineUnknown Engine = iota
	// SQLite: one file in data_dir, one instance.
	SQLite
	// Postgres: a PostgreSQL database, possibly shared by several instances.
	Postgres
)

func (e Engine) String() string {
	switch e {
	case SQLite:
		return "sqlite"
	case Postgres:
		return "postgres"
	}
	return "unknown"
}

// Config says which database to open.
type Config struct {
	Engine Engine
	// Path is the SQLite file (SQLite only).
	Path string
	// URI is the PostgreSQL connection string, a URL (postgres://user:pass@host/db) or
	// key=value words (Postgres only). It may hold a password: never log it.
	URI string
	// Log receives the schema upgrades and slow statements (default: none).
	Log *zerolog.Logger
}

// DB is the state database.
type DB struct {
	db     *dbutil.Database
	engine Engine
	now    func() time.Time
}

// Open opens (creating if needed) the SQLite database at path and brings its schema up
// to date.
func Open(ctx context.Context, path string) (*DB, error) {
	return OpenConfig(ctx, Config{Engine: SQLite, Path: path})
}

// OpenConfig opens the database cfg names and brings its schema up to date.
func OpenConfig(ctx context.Context, cfg Config) (*DB, error) {
	var raw *sql.DB
	var dialect, where string
	switch cfg.Engine {
	case SQLite:
		var err error
		if raw, err = openSQLite(cfg.Path); err != nil {
			return nil, err
		}
		dialect, where = "sqlite3", cfg.Path
	case Postgres:
		var err error
		// Enough for the lifecycle's queues and the uploaders; the server's own limit
		// (max_connections, 100 by default) is shared by every instance.
		if raw, err = OpenPostgres(cfg.URI, 8); err != nil {
			return nil, fmt.Errorf("state database: %w", err)
		}
		dialect, where = "postgres", "PostgreSQL"
	default:
		return nil, fmt.Errorf("state database: unknown engine %v", cfg.Engine)
	}
	d, err := wrap(ctx, raw, dialect, cfg.Engine, cfg.Log)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("state database (%s): %w", where, err), raw.Close())
	}
	return d, nil
}

// OpenPostgres opens a pool of at most maxConns connections to the PostgreSQL database uri
// names (the state database's, and the crypto store's in a fleet). It connects lazily.
func OpenPostgres(uri string, maxConns int) (*sql.DB, error) {
	pc, err := pgx.ParseConfig(uri)
	if err != nil {
		// pgx's parse errors quote the connection string (and its password).
		return nil, errors.New("database.uri is not a PostgreSQL connection string (postgres://user:password@host:5432/db or host=... dbname=...)")
	}
	// A connection idle for a moment is checked before it is used again: after a
	// restart of the server its first statement would fail on the dead socket (pgx's
	// default checks only after a second).
	raw := stdlib.OpenDB(*pc, stdlib.OptionShouldPing(func(_ context.Context, p stdlib.ShouldPingParams) bool {
		return p.IdleDuration > 100*time.Millisecond
	}))
	raw.SetMaxOpenConns(maxConns)
	raw.SetMaxIdleConns(max(maxConns/2, 1))
	raw.SetConnMaxIdleTime(5 * time.Minute)
	return raw, nil
}

func openSQLite(path string) (*sql.DB, error) {
	// Created private first: SQLite would create it 0644 (less the umask), and gives its
	// -wal and -shm files the database's mode.
	if err := datadir.CreatePrivate(path); err != nil {
		return nil, fmt.Errorf("state database: %w", err)
	}
	q := url.Values{}
	q.Set("_foreign_keys", "on")
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", "10000")
	q.Set("_txlock", "immediate")
	raw, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	// One connection: SQLite writes one at a time anyway, and this keeps "database is
	// locked" out of the picture inside the process.
	raw.SetMaxOpenConns(1)
	return raw, nil
}

func wrap(ctx context.Context, raw *sql.DB, dialect string, engine Engine, log *zerolog.Logger) (*DB, error) {
	db, err := dbutil.NewWithDB(raw, dialect)
	if err != nil {
		return nil, err
	}
	if log != nil {
		db.Log = dbLog{log: log.With().Str("component", "database").Logger()}
	}
	db.VersionTable = versionTable
	// Refuse a homeserver's database (Synapse's, Dendrite's) named by mistake.
	db.IgnoreForeignTables = false
	if db.UpgradeTable, err = upgradeTable(); err != nil {
		return nil, err
	}
	d := &DB{db: db, engine: engine, now: time.Now}
	if err := d.Ping(ctx); err != nil {
		return nil, err
	}
	if engine == SQLite {
		if err := d.adoptUserVersion(ctx); err != nil {
			return nil, err
		}
	}
	if engine == Postgres {
		// Instances started at once on an empty database: one migrates, the others
		// wait for it (and then find nothing left to do).
		err = WithAdvisoryLock(ctx, raw, schemaLockKey, func() error { return d.upgrade(ctx) })
	} else {
		err = d.upgrade(ctx)
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

// upgrade migrates the schema to this release's.
func (d *DB) upgrade(ctx context.Context) error {
	if err := d.db.Upgrade(ctx); err != nil {
		if errors.Is(err, dbutil.ErrUnsupportedDatabaseVersion) {
			return fmt.Errorf("%w: was matrix-recorder downgraded?", err)
		}
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// schemaLockKey names the PostgreSQL advisory lock held while the schema is migrated
// ("mrecord").
const schemaLockKey = 0x6d7265636f7264

// WithAdvisoryLock runs fn holding PostgreSQL's advisory lock key, so that of the
// processes on one database one at a time runs it (a migration, a one-time set-up). The
// lock is taken on a connection of its own and ends with it, also when the process dies.
func WithAdvisoryLock(ctx context.Context, raw *sql.DB, key int64, fn func() error) error {
	conn, err := raw.Conn(ctx)
	if err != nil {
		return fmt.Errorf("take the advisory lock %#x: %w", key, err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key)
		_ = conn.Close()
	}()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("take the advisory lock %#x: %w", key, err)
	}
	return fn()
}

// upgradeTable reads the embedded migrations (dbutil panics on a malformed file: a bug of
// this package that its tests catch, turned into an error here all the same).
func upgradeTable() (table dbutil.UpgradeTable, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("embedded migrations: %v", r)
		}
	}()
	return dbutil.BuildUpgradeTable().WithFSPath(migrations, "migrations").Finish(), nil
}

// adoptUserVersion carries the schema version of a SQLite database written before dbutil
// (kept in PRAGMA user_version, one migration per version, the same numbers) into dbutil's
// version table, so its upgrade continues from there.
func (d *DB) adoptUserVersion(ctx context.Context) error {
	exists, err := d.db.TableExists(ctx, versionTable)
	if err != nil || exists {
		return err
	}
	var v int
	if err := d.db.QueryRow(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v == 0 {
		return nil
	}
	if v > len(d.db.UpgradeTable) {
		return fmt.Errorf("schema version %d is newer than this matrix-recorder knows (%d): was it downgraded?", v, len(d.db.UpgradeTable))
	}
	return d.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := d.db.Exec(ctx, "CREATE TABLE "+versionTable+" (version INTEGER, compat INTEGER)"); err != nil {
			return fmt.Errorf("create version table: %w", err)
		}
		if _, err := d.db.Exec(ctx, "INSERT INTO "+versionTable+" (version, compat) VALUES ($1, $1)", v); err != nil {
			return fmt.Errorf("carry over schema version %d: %w", v, err)
		}
		return nil
	})
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Ping checks that the database answers (health checks).
func (d *DB) Ping(ctx context.Context) error {
	var one int
	if err := d.db.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("state database: %w", err)
	}
	return nil
}

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("not found")

func ms(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

func (d *DB) nowMS() int64 { return d.now().UnixMilli() }

// inList returns "$n,$n+1,..." for an IN clause whose first value is the query's
// parameter number first, and the arguments.
func inList[T any](first int, vals []T) (string, []any) {
	args := make([]any, len(vals))
	ph := make([]string, len(vals))
	for i, v := range vals {
		args[i] = v
		ph[i] = "$" + strconv.Itoa(first+i)
	}
	return strings.Join(ph, ","), args
}

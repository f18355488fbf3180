// Package storage keeps the recorder's state in SQLite (data_dir/recorder.db): the calls
// it recorded, their recordings (call folders), every file (part) of them and the copies
// of those files in object storage, each row with an explicit status. The state survives
// restarts: rows a crash left active are found and marked interrupted on the next start.
package storage

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-recorder/matrix-recorder/storage/datadir"

	// The SQLite driver (cgo), the one mautrix's crypto store uses too.
	_ "github.com/mattn/go-sqlite3"
)

// FileName is the database's file name in data_dir.
const FileName = "recorder.db"

//go:embed migrations/*.sql
var migrations embed.FS

// DB is the state database.
type DB struct {
	db  *sql.DB
	now func() time.Time
}

// Open opens (creating if needed) the database at path and brings its schema up to date.
func Open(ctx context.Context, path string) (*DB, error) {
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
	sdb, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	// One connection: SQLite writes one at a time anyway, and this keeps "database is
	// locked" out of the picture inside the process.
	sdb.SetMaxOpenConns(1)
	d := &DB{db: sdb, now: time.Now}
	if err := d.migrate(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("state database %s: %w", path, err), sdb.Close())
	}
	return d, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Ping checks that the database answers (health checks).
func (d *DB) Ping(ctx context.Context) error {
	var one int
	if err := d.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("state database: %w", err)
	}
	return nil
}

// migrate applies the embedded migrations newer than the database's user_version, each in
// its own transaction.
func (d *DB) migrate(ctx context.Context) error {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(files)
	var version int
	if err := d.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(files) {
		return fmt.Errorf("schema version %d is newer than this matrix-recorder knows (%d): was it downgraded?", version, len(files))
	}
	for i := version; i < len(files); i++ {
		name := files[i]
		n, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(name, "migrations/"), "_", 2)[0])
		if err != nil || n != i+1 {
			return fmt.Errorf("migration %s is out of sequence (want number %d)", name, i+1)
		}
		script, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := d.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, string(script)); err != nil {
			return errors.Join(fmt.Errorf("apply %s: %w", name, err), tx.Rollback())
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			return errors.Join(fmt.Errorf("set schema version: %w", err), tx.Rollback())
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit %s: %w", name, err)
		}
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

// inList returns "?,?,?" and the arguments for an IN clause.
func inList[T any](vals []T) (string, []any) {
	args := make([]any, len(vals))
	for i, v := range vals {
		args[i] = v
	}
	return strings.TrimSuffix(strings.Repeat("?,", len(vals)), ","), args
}

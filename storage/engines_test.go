package storage

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/internal/devpg"
)

// pg is the PostgreSQL server of this package's tests.
var pg devpg.Shared

func TestMain(m *testing.M) { os.Exit(pg.Run(m)) }

// postgresConfig returns a fresh PostgreSQL database for the test (skipped without
// PostgreSQL, except in CI).
func postgresConfig(t *testing.T) Config {
	t.Helper()
	return Config{Engine: Postgres, URI: pg.Database(t)}
}

// engine is one database of a test, opened as often as the test likes.
type engine struct {
	cfg Config
}

// open opens the test's database, closed when the test ends.
func (e engine) open(t *testing.T) *DB {
	t.Helper()
	d, err := OpenConfig(context.Background(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// eachEngine runs fn on a fresh SQLite database and on a fresh PostgreSQL database.
func eachEngine(t *testing.T, fn func(t *testing.T, e engine)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, engine{cfg: Config{Engine: SQLite, Path: filepath.Join(t.TempDir(), FileName)}})
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, engine{cfg: postgresConfig(t)})
	})
}

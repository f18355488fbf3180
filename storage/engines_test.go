package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/internal/devpg"
)

// The PostgreSQL server of this package's tests: started by the first test that needs
// it, stopped by TestMain.
var pg struct {
	once sync.Once
	srv  *devpg.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg.srv != nil {
		if err := pg.srv.Stop(); err != nil {
			println("stopping PostgreSQL:", err.Error())
		}
	}
	os.Exit(code)
}

// postgresConfig returns a fresh PostgreSQL database for the test. Without PostgreSQL
// the test is skipped, except in CI (MATRIX_RECORDER_CI, where scripts/test.sh has
// installed it), where that fails it.
func postgresConfig(t *testing.T) Config {
	t.Helper()
	pg.once.Do(func() { pg.srv, pg.err = devpg.Start(context.Background()) })
	if errors.Is(pg.err, devpg.ErrNoBinaries) && os.Getenv("MATRIX_RECORDER_CI") == "" {
		t.Skip("PostgreSQL is not installed (scripts/test.sh installs it): ", pg.err)
	}
	if pg.err != nil {
		t.Fatal(pg.err)
	}
	uri, err := pg.srv.CreateDatabase(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return Config{Engine: Postgres, URI: uri}
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

package devpg

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"testing"
)

// A cluster starts, serves a database of its own, survives a restart with its data, and
// leaves nothing behind when stopped.
func TestStartCreateRestartStop(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx)
	if errors.Is(err, ErrNoBinaries) && os.Getenv("MATRIX_RECORDER_CI") == "" {
		t.Skip("PostgreSQL is not installed (scripts/test.sh installs it): ", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	uri, err := s.CreateDatabase(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateDatabase(ctx, "Bad-Name; DROP"); err == nil {
		t.Error("accepted a database name that is not an identifier")
	}
	db, err := sql.Open("pgx", uri)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := db.QueryRowContext(ctx, "SELECT v FROM t").Scan(&v); err != nil || v != "kept" {
		// database/sql drops the connection the restart cut and dials again.
		t.Fatalf("after a restart: %q %v", v, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Errorf("the cluster's folder is still there: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

package dbcopy

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

func sqliteWith(t *testing.T, stmts ...string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// Parents come before the tables that refer to them, whatever their names; tables keep
// leaves out; a circle is an error, not a loop.
func TestTablesParentsFirst(t *testing.T) {
	db := sqliteWith(t,
		`CREATE TABLE a_child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES z_parent (id), q INTEGER REFERENCES m_middle (id))`,
		`CREATE TABLE m_middle (id INTEGER PRIMARY KEY, p INTEGER REFERENCES z_parent (id))`,
		`CREATE TABLE z_parent (id INTEGER PRIMARY KEY, self INTEGER REFERENCES z_parent (id))`,
		`CREATE TABLE skipped (id INTEGER PRIMARY KEY)`)
	got, err := Tables(context.Background(), db, func(n string) bool { return n != "skipped" })
	if err != nil || !slices.Equal(got, []string{"z_parent", "m_middle", "a_child"}) {
		t.Errorf("order %v %v", got, err)
	}
	circle := sqliteWith(t,
		`CREATE TABLE x (id INTEGER PRIMARY KEY, y INTEGER REFERENCES y (id))`,
		`CREATE TABLE y (id INTEGER PRIMARY KEY, x INTEGER REFERENCES x (id))`)
	if _, err := Tables(context.Background(), circle, func(string) bool { return true }); err == nil {
		t.Error("a circle of foreign keys was ordered")
	}
}

// SQLite's integers become booleans, bytes become text and text bytea where the target
// column says so; other values pass as they are; a boolean column refuses text.
func TestConvert(t *testing.T) {
	for _, c := range []struct {
		v    any
		typ  string
		want any
	}{
		{int64(1), "boolean", true}, {int64(0), "boolean", false}, {true, "boolean", true}, {nil, "boolean", nil},
		{[]byte("x"), "text", "x"}, {[]byte("{}"), "jsonb", "{}"}, {"raw", "bytea", []byte("raw")},
		{int64(7), "bigint", int64(7)}, {"s", "text", "s"},
	} {
		got, err := convert(c.v, c.typ)
		if err != nil {
			t.Errorf("%v as %s: %v", c.v, c.typ, err)
			continue
		}
		if b, ok := c.want.([]byte); ok {
			if gb, _ := got.([]byte); string(gb) != string(b) {
				t.Errorf("%v as %s: %v", c.v, c.typ, got)
			}
			continue
		}
		if got != c.want {
			t.Errorf("%v as %s: %#v, want %#v", c.v, c.typ, got, c.want)
		}
	}
	if _, err := convert("yes", "boolean"); err == nil {
		t.Error("text became a boolean")
	}
}

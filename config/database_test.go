package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const s3Section = "storage:\n  s3:\n    endpoint: s3.mine.test\n    bucket: rec\n    access_key: a\n    secret_key: b\n"

func TestDatabaseDefaultsToSQLite(t *testing.T) {
	l, e := read(t, account)
	if e != nil {
		t.Fatal(e)
	}
	if l.Config.Database.Type != DatabaseSQLite || l.Config.Database.Fleet() || l.Config.Instance.ID != "" {
		t.Errorf("defaults: %+v %+v", l.Config.Database, l.Config.Instance)
	}
}

// The URI comes from the file, the environment or a file the environment names (a
// secret: never -set, never echoed in a message).
func TestDatabasePostgres(t *testing.T) {
	const uri = "postgres://rec:s3cr3t@db.mine.test:5432/recorder"
	l, e := read(t, account+s3Section+"database:\n  type: postgres\n  uri: "+uri+"\ninstance:\n  id: rec-1.a_b\n")
	if e != nil {
		t.Fatal(e)
	}
	if !l.Config.Database.Fleet() || l.Config.Database.URI != uri || l.Config.Instance.ID != "rec-1.a_b" {
		t.Errorf("parsed: %+v %+v", l.Config.Database, l.Config.Instance)
	}
	l, e = read(t, account+s3Section, "MATRIX_RECORDER_DATABASE_TYPE=postgres", "MATRIX_RECORDER_DATABASE_URI=host=/run/postgresql dbname=rec",
		"MATRIX_RECORDER_INSTANCE_ID=b")
	if e != nil {
		t.Fatal(e)
	}
	if l.Config.Database.Type != DatabasePostgres || l.Config.Database.URI != "host=/run/postgresql dbname=rec" || l.Config.Instance.ID != "b" {
		t.Errorf("from the environment: %+v %+v", l.Config.Database, l.Config.Instance)
	}
	file := filepath.Join(t.TempDir(), "uri")
	if err := os.WriteFile(file, []byte(uri+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, e = read(t, account+s3Section+"database:\n  type: postgres\n", "MATRIX_RECORDER_DATABASE_URI_FILE="+file)
	if e != nil {
		t.Fatal(e)
	}
	if l.Config.Database.URI != uri {
		t.Errorf("from a file: %q", l.Config.Database.URI)
	}
	if _, err := Read([]byte(account), "c", Options{Set: []string{"database.uri=" + uri}}); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("-set of the secret URI: %v", err)
	}
}

func TestDatabaseProblems(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"database:\n  type: mysql\n", `database.type "mysql" must be sqlite or postgres`},
		{"database:\n  uri: postgres://a@b.test/c\n", "database.uri is for database.type postgres"},
		{s3Section + "database:\n  type: postgres\n", "database.uri is required with database.type postgres"},
		{s3Section + "database:\n  type: postgres\n  uri: 'postgres://u:p@ss@db.test:x/y'\n", "database.uri is not a valid URL"},
		{s3Section + "database:\n  type: postgres\n  uri: just-a-word-s3cr3t\n", "database.uri is not a PostgreSQL connection string"},
		{s3Section + "database:\n  type: postgres\n  uri: postgres://u:s3cr3t@db.example.com/rec\n", "database.uri still names the example's host"},
		// A fleet without the shared store is refused at start, saying why.
		{"database:\n  type: postgres\n  uri: postgres://u:s3cr3t@db.mine.test/rec\n", "database.type postgres runs recorders as a fleet sharing one database, and a fleet needs storage.s3"},
		{"instance:\n  id: 'two words'\n", `instance.id "two words" must be 1 to 64 letters`},
		{"instance:\n  id: -dash\n", `instance.id "-dash" must be`},
		{"instance:\n  id: " + strings.Repeat("a", 65) + "\n", "instance.id"},
	} {
		_, e := read(t, account+c.yaml)
		if e == nil {
			t.Errorf("%q: accepted", c.yaml)
			continue
		}
		if !strings.Contains(e.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, e, c.want)
		}
		if strings.Contains(e.Error(), "s3cr3t") {
			t.Errorf("%q: the message shows the URI's password: %v", c.yaml, e)
		}
	}
}

// -generate-config keeps an operator's database and instance keys, and leaves a URI
// from the environment there.
func TestGenerateKeepsDatabaseKeys(t *testing.T) {
	old := account + s3Section + "database:\n  type: postgres\n  uri: host=db.mine.test dbname=rec\ninstance:\n  id: rec-a\n"
	g, err := Generate([]byte(old), "old.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := string(g.Data)
	for _, want := range []string{"  type: postgres\n", "  uri: host=db.mine.test dbname=rec\n", "  id: rec-a\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	g, err = Generate(nil, "new.yaml", Options{Environ: []string{"MATRIX_RECORDER_DATABASE_URI=postgres://u:s3cr3t@db.mine.test/rec"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(g.Data), "s3cr3t") || len(g.FromEnv) != 1 || g.FromEnv[0] != "database.uri" {
		t.Errorf("the URI from the environment was written into the file (or not reported): %v", g.FromEnv)
	}
}

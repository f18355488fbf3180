package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// DatabaseType is the engine of the state database (database.type).
type DatabaseType string

// Database types.
const (
	// DatabaseSQLite: data_dir/recorder.db, one instance (the default).
	DatabaseSQLite DatabaseType = "sqlite"
	// DatabasePostgres: a PostgreSQL database (database.uri) that several instances
	// share: a fleet, which needs storage.s3.
	DatabasePostgres DatabaseType = "postgres"
)

// Database configures the state database: the recordings, their files and uploads, and
// the leases that say which instance does what.
type Database struct {
	Type DatabaseType `yaml:"type"`
	// URI is the PostgreSQL connection string (postgres://user:password@host:5432/db or
	// host=... dbname=...); unused for SQLite.
	URI string `yaml:"uri" secret:"true"`
}

// Fleet reports whether several instances may share the state (database.type postgres).
func (d Database) Fleet() bool { return d.Type == DatabasePostgres }

// Instance configures this process's identity among the instances sharing a database.
type Instance struct {
	// ID names this instance in leases, logs and metrics; empty: generated on first
	// start and kept in data_dir/instance-id.
	ID string `yaml:"id"`
}

// instanceIDPattern is what instance.id allows: it shows in logs, metrics and the room.
var instanceIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidInstanceID reports whether id can name an instance.
func ValidInstanceID(id string) bool { return instanceIDPattern.MatchString(id) }

func (c *Config) validateDatabase() []error {
	var errs []error
	d := c.Database
	switch d.Type {
	case DatabaseSQLite:
		if d.URI != "" {
			errs = append(errs, errors.New("database.uri is for database.type postgres; SQLite lives in data_dir/recorder.db (leave database.uri empty)"))
		}
	case DatabasePostgres:
		if err := checkPostgresURI(d.URI); err != nil {
			errs = append(errs, err)
		}
		if !c.Storage.S3.Enabled() {
			errs = append(errs, errors.New("database.type postgres runs recorders as a fleet sharing one database, and a fleet needs storage.s3: "+
				"another instance continues a recording and delivers its files only from the shared store. Set storage.s3 (endpoint, bucket, keys), "+
				"or use database.type sqlite for a single recorder"))
		}
	default:
		errs = append(errs, fmt.Errorf("database.type %q must be sqlite or postgres", d.Type))
	}
	if id := c.Instance.ID; id != "" && !ValidInstanceID(id) {
		errs = append(errs, fmt.Errorf("instance.id %q must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", id))
	}
	return errs
}

// checkPostgresURI checks the form of a connection string without echoing it (it may
// hold a password).
func checkPostgresURI(uri string) error {
	const forms = "postgres://user:password@host:5432/dbname or host=... user=... dbname=..."
	uri = strings.TrimSpace(uri)
	switch {
	case uri == "":
		return fmt.Errorf("database.uri is required with database.type postgres: %s (or %s, or %s)", forms, EnvName("database.uri"), EnvName("database.uri")+EnvFileSuffix)
	case strings.HasPrefix(uri, "postgres://"), strings.HasPrefix(uri, "postgresql://"):
		u, err := url.Parse(uri)
		if err != nil {
			return fmt.Errorf("database.uri is not a valid URL (check its escaping: a password with @ : / # ? needs %%-escapes): %s", forms)
		}
		if u.Host != "" && placeholderHost(u.Hostname()) {
			return errors.New("database.uri still names the example's host: fill in your PostgreSQL server")
		}
	case strings.Contains(uri, "="):
	default:
		return fmt.Errorf("database.uri is not a PostgreSQL connection string: %s", forms)
	}
	return nil
}

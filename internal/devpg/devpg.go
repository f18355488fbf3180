// Package devpg runs a throwaway PostgreSQL server for tests: Debian's postgresql
// package (/usr/lib/postgresql/*/bin), a fresh cluster in a temporary folder (initdb),
// reached through a Unix socket in that folder (no TCP port, nothing shared with other
// tests or engineers), removed by Stop. Nothing is cached between runs.
//
// PostgreSQL refuses to run as root: as root, the cluster belongs to the "postgres" user
// the package creates (or "nobody"), and the server runs as that user.
package devpg

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	// The driver the recorder uses.
	_ "github.com/jackc/pgx/v5/stdlib"
)

// EnvBin names a folder holding initdb and postgres, used instead of the search under
// /usr/lib/postgresql.
const EnvBin = "MATRIX_RECORDER_PG_BIN"

// Superuser is the cluster's superuser; connections over the socket need no password
// (trust), and only the test's own user can reach the socket's folder.
const Superuser = "postgres"

// ErrNoBinaries: PostgreSQL is not installed (apt-get install postgresql).
var ErrNoBinaries = errors.New("no PostgreSQL binaries (initdb, postgres): install Debian's postgresql package, or set " + EnvBin)

// Server is a running PostgreSQL.
type Server struct {
	dir     string
	sockDir string
	port    int
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error

	mu  sync.Mutex
	dbs int
}

// Binaries returns the folder of the newest installed PostgreSQL's initdb and postgres.
func Binaries() (string, error) {
	if dir := os.Getenv(EnvBin); dir != "" {
		if hasBinaries(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("%s=%s has no initdb and postgres: %w", EnvBin, dir, ErrNoBinaries)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if hasBinaries(d) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func hasBinaries(dir string) bool {
	for _, b := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// runAs returns the credential to run PostgreSQL with (nil: as this process) and the
// owner of the cluster's folders.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New("running as root, and there is no postgres or nobody user to run PostgreSQL as (it refuses root)")
}

// Start creates a cluster in a new temporary folder and starts the server on a socket
// there, returning once it accepts connections. Stop ends it and removes the folder.
func Start(ctx context.Context) (*Server, error) {
	bin, err := Binaries()
	if err != nil {
		return nil, err
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: its parents are private to root, and the server's user must reach
	// the cluster. The folder itself is private to that user.
	dir, err := os.MkdirTemp("", "devpg-")
	if err != nil {
		return nil, fmt.Errorf("devpg: %w", err)
	}
	s := &Server{dir: dir, sockDir: filepath.Join(dir, "sock"), port: 5432, done: make(chan struct{})}
	fail := func(err error) (*Server, error) {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	data := filepath.Join(dir, "data")
	for _, d := range []string{data, s.sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fail(fmt.Errorf("devpg: %w", err))
		}
	}
	if cred != nil {
		for _, d := range []string{dir, data, s.sockDir} {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return fail(fmt.Errorf("devpg: give %s to the server's user: %w", d, err))
			}
		}
	}
	logPath := filepath.Join(dir, "postgres.log")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", Superuser, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Env = cleanEnv()
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("devpg: initdb: %w: %s", err, tail(string(out), 2000)))
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return fail(fmt.Errorf("devpg: %w", err))
	}
	// Durability is off: a test's cluster lives for one run. No TCP: the socket only.
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", s.sockDir, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB", "-c", "log_min_messages=warning")
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.cmd.Env = cleanEnv()
	// Its own process group (a signal to the test's group does not reach it first); a
	// test binary that dies takes the server along (SIGQUIT: immediate shutdown).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if err := s.cmd.Start(); err != nil {
		return fail(errors.Join(fmt.Errorf("devpg: start postgres: %w", err), logFile.Close()))
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		_ = logFile.Close()
		close(s.done)
	}()
	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	return s, nil
}

// cleanEnv is the environment without the PG* variables that would point the server or
// its tools elsewhere.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return append(out, "LC_ALL=C")
}

func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	db, err := sql.Open("pgx", s.URI("postgres"))
	if err != nil {
		return fmt.Errorf("devpg: %w", err)
	}
	defer db.Close()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		last = db.PingContext(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("devpg: postgres exited (%v): %s", s.waitErr, s.LogTail(2000))
		case <-ctx.Done():
			return fmt.Errorf("devpg: postgres did not accept connections within %s (%v): %s", limit, last, s.LogTail(2000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URI returns a connection string (key=value words) for database db as the superuser.
func (s *Server) URI(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.sockDir, s.port, Superuser, db)
}

var dbName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CreateDatabase creates an empty database (a test's own) and returns its connection
// string. An empty name picks a fresh one.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	if name == "" {
		s.mu.Lock()
		s.dbs++
		name = fmt.Sprintf("test_%d", s.dbs)
		s.mu.Unlock()
	}
	if !dbName.MatchString(name) {
		return "", fmt.Errorf("devpg: database name %q: lower-case letters, digits and _ only", name)
	}
	db, err := sql.Open("pgx", s.URI("postgres"))
	if err != nil {
		return "", fmt.Errorf("devpg: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("devpg: create database %s: %w", name, err)
	}
	return s.URI(name), nil
}

// Restart stops the server (fast shutdown: open connections are cut) and starts it again
// on the same cluster and socket, as a database restarted under a running recorder.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Down(); err != nil {
		return err
	}
	return s.Up(ctx)
}

// Down stops the server (fast shutdown) and keeps its cluster, for Up: a database outage
// as long as the caller waits in between.
func (s *Server) Down() error { return s.shutdown() }

// Up starts the server Down stopped again, on the same cluster and socket.
func (s *Server) Up(ctx context.Context) error {
	logFile, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("devpg: %w", err)
	}
	cmd := exec.Command(s.cmd.Path, s.cmd.Args[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.Env, cmd.SysProcAttr = logFile, logFile, s.cmd.Env, s.cmd.SysProcAttr
	if err := cmd.Start(); err != nil {
		return errors.Join(fmt.Errorf("devpg: restart postgres: %w", err), logFile.Close())
	}
	s.cmd, s.done, s.waitErr = cmd, make(chan struct{}), nil
	done := s.done
	go func() {
		s.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(done)
	}()
	return s.waitReady(ctx, 60*time.Second)
}

// shutdown stops the server: fast shutdown (SIGINT), then SIGKILL after 10 seconds.
func (s *Server) shutdown() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
		return nil
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		return errors.New("devpg: postgres did not stop within 10s; killed")
	}
}

// Stop ends the server and removes its folder. It is idempotent.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = errors.Join(s.shutdown(), os.RemoveAll(s.dir))
	})
	return s.stopErr
}

// LogTail returns at most n bytes from the end of the server's log.
func (s *Server) LogTail(n int) string {
	data, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
	return tail(string(data), n)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

package lockfile

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSecondAcquireIsRefusedWithThePID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l, err := Acquire(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file, so a second open in the same process is
	// refused just like another process would be.
	_, err = Acquire(path, 0o600)
	var held *HeldError
	if !errors.As(err, &held) || held.PID != os.Getpid() || held.Path != path {
		t.Fatalf("second acquire: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, strconv.Itoa(os.Getpid())) || !strings.Contains(msg, path) {
		t.Errorf("error does not name the pid and the path: %s", msg)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode: %v %v", fi.Mode(), err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(path, 0o600)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	_ = l2.Release()
}

// A file left by a process that died (kill -9) blocks nobody, whatever pid it names.
func TestStaleFileDoesNotBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	if err := os.WriteFile(path, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(path, 0o600)
	if err != nil {
		t.Fatalf("stale file blocked: %v", err)
	}
	defer l.Release()
	data, _ := os.ReadFile(path)
	if strings.TrimSpace(string(data)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("file says %q, want our pid", data)
	}
}

// The lock dies with its holder: a child process that holds it and is killed leaves a
// file that the next Acquire takes over.
func TestLockDiesWithItsHolder(t *testing.T) {
	if os.Getenv("LOCKFILE_CHILD") != "" {
		if _, err := Acquire(os.Getenv("LOCKFILE_CHILD"), 0o600); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("held\n")
		select {}
	}
	path := filepath.Join(t.TempDir(), "lock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockDiesWithItsHolder$")
	cmd.Env = append(os.Environ(), "LOCKFILE_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf[:4]) != "held" {
		t.Fatalf("child did not take the lock: %q %v", buf, err)
	}
	var held *HeldError
	if _, err := Acquire(path, 0o600); !errors.As(err, &held) || held.PID != cmd.Process.Pid {
		t.Fatalf("lock held by a live child: %v", err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	l, err := Acquire(path, 0o600)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	_ = l.Release()
}

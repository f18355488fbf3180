package devtools

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProcessStopsWithContextAndGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	ctx, cancel := context.WithCancel(context.Background())
	// The shell starts a child of its own; both must go when ctx ends.
	p, err := StartProcess(ctx, ProcessSpec{
		Name:    "sh",
		Path:    "/bin/sh",
		Args:    []string{"-c", "sleep 60 & echo $! > " + pidFile + "; echo started; wait"},
		Dir:     dir,
		LogPath: filepath.Join(dir, "sh.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0; {
		if data, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(data), "\n") {
			if child, err = strconv.Atoi(strings.TrimSpace(string(data))); err != nil {
				t.Fatal(err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("child never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("process still running 10 s after its context ended")
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	// The child is gone (or a zombie about to be reaped by init).
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(child, 0) == nil {
		if stat, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat"); err == nil && strings.Contains(string(stat), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the stopped process still runs", child)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(p.LogTail(100), "started") {
		t.Errorf("log tail %q lacks the process output", p.LogTail(100))
	}
}

func TestProcessStartsWithEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	p, err := StartProcess(ctx, ProcessSpec{Name: "sleep", Path: "/bin/sleep", Args: []string{"60"}, Dir: dir,
		LogPath: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("process started with an ended context still runs")
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
}

// A dev server's temporary folder goes with it; a folder its options named stays.
func TestServerDir(t *testing.T) {
	tmp, remove, err := ServerDir("", "devtools-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temporary folder %s left behind: %v", tmp, err)
	}
	given := filepath.Join(t.TempDir(), "srv")
	dir, remove, err := ServerDir(given, "devtools-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := remove(); err != nil || dir != given {
		t.Fatalf("dir %s, remove: %v", dir, err)
	}
	if _, err := os.Stat(given); err != nil {
		t.Errorf("the named folder: %v", err)
	}
}

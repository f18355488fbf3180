package devtools

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestLookupKnowsEveryEmbeddedModule(t *testing.T) {
	for _, name := range Names() {
		tool, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(tool.Packages) == 0 || len(tool.Binaries) == 0 || tool.Version == "" {
			t.Errorf("%s: incomplete description %+v", name, tool)
		}
		if _, err := moduleSum(tool); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		mod, err := modules.ReadFile("modules/" + name + "/go.mod.txt")
		if err != nil {
			t.Fatal(err)
		}
		// The pin in go.mod.txt must be the version the cache folder is named after.
		if !strings.Contains(string(mod), " "+tool.Version) {
			t.Errorf("%s: go.mod.txt does not require version %s", name, tool.Version)
		}
		src, err := modules.ReadFile("modules/" + name + "/tools.go.txt")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tool.Packages {
			if !strings.Contains(string(src), `"`+p+`"`) {
				t.Errorf("%s: tools.go.txt does not import %s", name, p)
			}
		}
	}
	if _, err := Lookup("nope"); err == nil {
		t.Error("Lookup of an unknown tool succeeded")
	}
}

func TestEnsureUsesCompleteCache(t *testing.T) {
	tool, err := Lookup(VersityGW)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	dir := filepath.Join(root, tool.key())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range tool.Binaries {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/true\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := moduleSum(tool)
	if err != nil {
		t.Fatal(err)
	}
	opts := []Option{WithCacheRoot(root), WithGo(filepath.Join(root, "no-go-here")), WithLogger(zerolog.Nop())}

	// Without a marker the folder is an interrupted build: Ensure must try
	// to build (and fail here, as there is no go command).
	if _, err := Ensure(context.Background(), tool, opts...); err == nil || !strings.Contains(err.Error(), "needs the go command") {
		t.Fatalf("Ensure without marker: %v", err)
	}
	if err := writeMarker(dir, marker{Tool: tool.Name, Version: tool.Version, ModuleSHA256: sum}); err != nil {
		t.Fatal(err)
	}
	got, err := Ensure(context.Background(), tool, opts...)
	if err != nil {
		t.Fatalf("Ensure with complete cache: %v", err)
	}
	if got != dir {
		t.Fatalf("Ensure returned %s, want %s", got, dir)
	}

	// A marker from another module pin is stale.
	if err := writeMarker(dir, marker{Tool: tool.Name, Version: tool.Version, ModuleSHA256: "other"}); err != nil {
		t.Fatal(err)
	}
	if complete(dir, tool, sum) {
		t.Fatal("a marker with another module hash counted as complete")
	}
}

func TestLockFileSerialises(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := lockFile(context.Background(), path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file, so a second open in the same
	// process waits like another process would.
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, path, zerolog.Nop()); err == nil {
		t.Fatal("second lock succeeded while the first was held")
	}
	unlock()
	unlock2, err := lockFile(context.Background(), path, zerolog.Nop())
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestCacheRootFromEnv(t *testing.T) {
	t.Setenv(EnvCacheRoot, "/some/where")
	got, err := CacheRoot()
	if err != nil || got != "/some/where" {
		t.Fatalf("CacheRoot() = %q, %v", got, err)
	}
}

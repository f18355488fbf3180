package devtools

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// The pins that are embedded now name no AGPL module, and neither does the project's own
// go.mod (the minio-go client stays: it is Apache-2.0).
func TestNoAGPLModulePinned(t *testing.T) {
	if err := CheckEmbeddedLicences(); err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkModuleFiles("matrix-recorder", map[string][]byte{"go.mod.txt": mod}); err != nil {
		t.Fatalf("the project's go.mod: %v", err)
	}
}

// agplPath returns the module of AGPLModules whose path ends with suffix, so that the cases
// below name the refused modules through the guard's own list and pin none of them.
func agplPath(t *testing.T, suffix string) string {
	t.Helper()
	for _, m := range AGPLModules {
		if strings.HasSuffix(m.Path, suffix) {
			return m.Path
		}
	}
	t.Fatalf("no AGPL module ending in %q in the list", suffix)
	return ""
}

func TestGuardRefusesAGPLModules(t *testing.T) {
	// The refused modules, by the guard's list; the versions are made up.
	minioServer := agplPath(t, "/minio")
	elementHS := agplPath(t, "/dendrite")
	jwtService := agplPath(t, "/lk-jwt-service")
	synapseMixed := strings.ToUpper(agplPath(t, "/synapse")[:12]) + agplPath(t, "/synapse")[12:]
	const v = "v0.0.0-00010101000000-000000000000"
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		bad   string // the module the error must name; empty: accepted
	}{
		{"minio server required", map[string][]byte{
			"go.mod.txt": []byte("module tools/s3\n\ngo 1.26\n\nrequire " + minioServer + " " + v + "\n"),
		}, minioServer},
		{"element dendrite in a require block", map[string][]byte{
			"go.mod.txt": []byte("module tools/hs\n\nrequire (\n\t" + elementHS + " " + v + "\n\tgithub.com/pkg/errors v0.9.1 // indirect\n)\n"),
		}, elementHS},
		{"replace target", map[string][]byte{
			"go.mod.txt": []byte("module tools/hs\n\nrequire github.com/matrix-org/dendrite v0.13.8\n\nreplace github.com/matrix-org/dendrite => " + elementHS + " " + v + "\n"),
		}, elementHS},
		{"tools.go import of a package", map[string][]byte{
			"tools.go.txt": []byte("//go:build tools\n\npackage tools\n\nimport _ \"" + jwtService + "/cmd\"\n"),
		}, jwtService + "/cmd"},
		{"mixed case", map[string][]byte{
			"go.mod.txt": []byte("require " + synapseMixed + " " + v + "\n"),
		}, synapseMixed},
		{"downloaded source in go.sum", map[string][]byte{
			"go.sum.txt": []byte(minioServer + " " + v + " h1:abc=\n"),
		}, minioServer},
		// Not AGPL modules: the minio-go client, other minio modules, go.mod-only go.sum
		// lines, and a comment that mentions one.
		{"minio client and friends", map[string][]byte{
			"go.mod.txt":   []byte("module tools/x\n\nrequire (\n\tgithub.com/minio/minio-go/v7 v7.4.1\n\tgithub.com/minio/highwayhash v1.0.3 // indirect\n\tgithub.com/minio/minio-go v6.0.14+incompatible // not " + minioServer + "\n)\n"),
			"go.sum.txt":   []byte(minioServer + " " + v + "/go.mod h1:abc=\ngithub.com/minio/minio-go/v7 v7.4.1 h1:def=\n"),
			"tools.go.txt": []byte("import _ \"github.com/matrix-org/dendrite/cmd/dendrite\"\n"),
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkModuleFiles("x", tc.files)
			if tc.bad == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var le *LicenceError
			if !errors.As(err, &le) || le.Module != tc.bad {
				t.Fatalf("want a LicenceError naming %s, got %v", tc.bad, err)
			}
			// The message says why, and what to use instead.
			for _, want := range []string{tc.bad, "AGPL", "instead"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message lacks %q: %v", want, err)
				}
			}
		})
	}
}

// Ensure refuses an AGPL tool before it looks for a build or a go command, even with a
// complete build in the cache, whether the pin names the module as a package or as a
// source copy. The modules come from the guard's own list, so no AGPL path is spelled here.
func TestEnsureRefusesAGPLToolBeforeBuilding(t *testing.T) {
	for _, agpl := range AGPLModules {
		t.Run(agpl.Path, func(t *testing.T) {
			root := t.TempDir()
			tool := Tool{Name: "refused", Version: "v0", Packages: []string{agpl.Path}, Binaries: []string{"refused"}}
			dir := filepath.Join(root, tool.key())
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "refused"), []byte("#!/bin/true\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := writeMarker(dir, marker{Tool: tool.Name, Version: tool.Version}); err != nil {
				t.Fatal(err)
			}
			_, err := Ensure(context.Background(), tool, WithCacheRoot(root), WithGo(filepath.Join(root, "no-go-here")), WithLogger(zerolog.Nop()))
			var le *LicenceError
			if !errors.As(err, &le) || le.AGPL.Path != agpl.Path {
				t.Fatalf("Ensure of an AGPL tool: %v", err)
			}
			src := Tool{Name: "hs", Version: "v0", Packages: []string{"example.org/hs/cmd"}, Source: &SourceCopy{Module: agpl.Path}}
			if _, err := Ensure(context.Background(), src, WithCacheRoot(root), WithLogger(zerolog.Nop())); !errors.As(err, &le) || le.AGPL.Path != agpl.Path {
				t.Fatalf("Ensure of a tool built from an AGPL source copy: %v", err)
			}
		})
	}
}

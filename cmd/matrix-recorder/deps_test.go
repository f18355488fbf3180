package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The release binary links no dev harness (internal/: the demo's servers, test clients)
// and no test package: the demo is its own command (cmd/matrix-recorder-demo).
func TestReleaseBuildHasNoDevOrTestPackages(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	if testing.Short() {
		t.Skip("lists the build's packages")
	}
	out, err := exec.Command(goBin, "list", "-tags", "goolm", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/matrix-recorder/matrix-recorder/"
	n := 0
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "testing" || strings.HasPrefix(pkg, "testing/") || strings.HasSuffix(pkg, "_test") {
			t.Errorf("the release build links the test package %s", pkg)
		}
		rel, ours := strings.CutPrefix(pkg, module)
		if !ours {
			continue
		}
		n++
		if strings.HasPrefix(rel, "internal/") || strings.HasPrefix(rel, "test/") || strings.HasPrefix(rel, "cmd/") && rel != "cmd/matrix-recorder" {
			t.Errorf("the release build links the dev or test package %s", rel)
		}
	}
	if n < 10 {
		t.Fatalf("go list named %d of the module's packages; the test sees nothing", n)
	}
}

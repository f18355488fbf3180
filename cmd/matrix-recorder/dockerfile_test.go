package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// dockerInstructions reads the Dockerfile at path as instructions (continuation lines
// joined, comments dropped), each with its keyword in upper case first.
func dockerInstructions(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	cur := ""
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur == "") {
			continue
		}
		cur += " " + strings.TrimSuffix(trimmed, "\\")
		if !strings.HasSuffix(trimmed, "\\") {
			out = append(out, strings.TrimSpace(cur))
			cur = ""
		}
	}
	return out
}

// The image builds the release command only (not the demo) with -tags goolm, on Debian
// stable, checks its health with the healthcheck command, and declares its ports. No
// hadolint here: this checks what matters to us.
func TestDockerfile(t *testing.T) {
	var builds, from, health, expose []string
	entrypoint := ""
	for _, in := range dockerInstructions(t, "../../Dockerfile") {
		kw, rest, _ := strings.Cut(in, " ")
		switch strings.ToUpper(kw) {
		case "FROM":
			from = append(from, rest)
		case "RUN":
			if strings.Contains(rest, "go build") || strings.Contains(rest, "go install") {
				builds = append(builds, rest)
			}
		case "HEALTHCHECK":
			health = append(health, rest)
		case "EXPOSE":
			expose = append(expose, strings.Fields(rest)...)
		case "ENTRYPOINT":
			entrypoint = rest
		}
	}
	if len(builds) != 1 {
		t.Fatalf("%d go build steps, want 1: %q", len(builds), builds)
	}
	b := builds[0]
	if !regexp.MustCompile(`-tags[ =]goolm\b`).MatchString(b) {
		t.Errorf("the build lacks -tags goolm: %s", b)
	}
	if strings.Contains(b, "demo") || strings.Contains(b, "./...") || !strings.HasSuffix(strings.TrimSpace(b), "./cmd/matrix-recorder") {
		t.Errorf("the build must be ./cmd/matrix-recorder alone (no demo): %s", b)
	}
	for _, f := range from {
		if !strings.Contains(f, "trixie") {
			t.Errorf("FROM %s is not Debian stable (trixie)", f)
		}
	}
	if len(health) != 1 || !strings.Contains(health[0], `"healthcheck"`) {
		t.Errorf("HEALTHCHECK %q, want one running the healthcheck command", health)
	}
	want := map[string]bool{"8080/tcp": false, "10000/udp": false}
	for _, e := range expose {
		if _, ok := want[e]; ok {
			want[e] = true
		}
	}
	for port, ok := range want {
		if !ok {
			t.Errorf("no EXPOSE %s (have %q)", port, expose)
		}
	}
	if !strings.Contains(entrypoint, "docker-entrypoint") {
		t.Errorf("ENTRYPOINT %s, want the entrypoint script", entrypoint)
	}
	if _, err := os.Stat("../../scripts/docker-entrypoint.sh"); err != nil {
		t.Error(err)
	}
}

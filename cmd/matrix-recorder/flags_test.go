package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/storage/lockfile"
)

func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, &out, &errb); code != exitOK {
			t.Errorf("%s: exit %d, want 0", arg, code)
		}
		if errb.Len() != 0 || !strings.Contains(out.String(), "Usage:") {
			t.Errorf("%s: usage not on stdout (stdout %q, stderr %q)", arg, out.String(), errb.String())
		}
	}
	// Every flag is in the usage.
	for _, f := range []string{"-c, -config", "-generate-config", "-set key=value", "-shutdown-timeout", "-version", "-h, -help", "MATRIX_RECORDER_MATRIX_HOMESERVER", "_FILE"} {
		if !strings.Contains(usageText, f) {
			t.Errorf("the usage does not mention %s", f)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-nope"}, &out, &errb); code != exitConfig || !strings.Contains(errb.String(), "-nope") || !strings.Contains(errb.String(), "Usage:") {
		t.Errorf("an unknown flag: exit %d, stderr %q", code, errb.String())
	}
	if code := run([]string{"config.yaml"}, &out, &errb); code != exitConfig {
		t.Errorf("a stray argument: exit %d", code)
	}
}

func TestShortConfigFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.yaml")
	var out, errb bytes.Buffer
	if code := run([]string{"-c", path}, &out, &errb); code != exitConfig || !strings.Contains(errb.String(), "No config file at "+path) {
		t.Fatalf("-c %s: exit %d, %s", path, code, errb.String())
	}
}

// -version prints the module version from the build information (tests see "(devel)").
func TestVersionFromBuildInfo(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-version"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		t.Skip("no build information in this test binary")
	}
	want := "matrix-recorder " + versionOf(info, "").String() + "\n"
	if out.String() != want || !strings.Contains(want, info.Main.Version) || !strings.Contains(want, info.GoVersion) {
		t.Errorf("-version said %q, want %q", out.String(), want)
	}
}

func TestVersionOf(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}
	for _, tc := range []struct {
		info          *debug.BuildInfo
		override      string
		short, string string
	}{
		{&debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v1.2.0"}}, "", "v1.2.0", "v1.2.0 (go1.26.1)"},
		{&debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: vcs}, "",
			"(devel) 0123456789ab+modified", "(devel) 0123456789ab+modified 2026-12-01T10:00:00Z (go1.26.1)"},
		{&debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v0.0.0-20261201100000-0123456789ab+dirty"}, Settings: vcs}, "",
			"v0.0.0-20261201100000-0123456789ab+dirty", "v0.0.0-20261201100000-0123456789ab+dirty (go1.26.1)"},
		{&debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: vcs[:1]}, "docker", "docker 0123456789ab", "docker 0123456789ab (go1.26.1)"},
		{nil, "", "(devel)", "(devel)"},
	} {
		v := versionOf(tc.info, tc.override)
		if v.Short() != tc.short || v.String() != tc.string {
			t.Errorf("%+v %q: Short %q String %q, want %q %q", tc.info, tc.override, v.Short(), v.String(), tc.short, tc.string)
		}
	}
}

// The start-up log names the version (and the renamed keys' warnings), before anything
// else can fail.
func TestStartLogSaysVersion(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	held, err := lockfile.Acquire(filepath.Join(data, "lock"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	path := filepath.Join(dir, "config.yaml")
	cfg := "matrix:\n  homeserver: http://127.0.0.1:9\n  user_id: '@a:b'\n  password: x\ndata_dir: " + data + "\nrecordings:\n  dir: " + filepath.Join(dir, "rec") + "\nlog:\n  format: json\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	run([]string{"-c", path}, &out, &errb)
	want := `"version":"` + currentVersion().Short() + `"`
	if !strings.Contains(errb.String(), "Starting matrix-recorder") || !strings.Contains(errb.String(), want) {
		t.Errorf("the start-up log does not say %s:\n%s", want, errb.String())
	}
}

// A config with several mistakes gets them all in one answer, each with its dotted key;
// values from the environment are named by their variable.
func TestConfigProblemsListedAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := "matrix:\n  homeserver: https://matrix.example.org\n  user_id: '@a:b'\n  password: x\ncalls:\n  max_duration: 90\nlog:\n  level: verbose\nhttp:\n  listen: nowhere\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MATRIX_RECORDER_RECORDINGS_MAX_SIZE", "lots")
	var out, errb bytes.Buffer
	if code := run([]string{"-c", path}, &out, &errb); code != exitConfig {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{path + " has 5 problems:", `calls.max_duration: missing unit in "90"`, "(line 6)", `log.level "verbose"`, `http.listen "nowhere"`,
		"matrix.homeserver is still the example's", `recordings.max_size: size "lots"`, "(MATRIX_RECORDER_RECORDINGS_MAX_SIZE)"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("the answer does not say %q:\n%s", want, errb.String())
		}
	}
}

// -generate-config on an existing config upgrades it in place: its values kept, the rest
// as in the example, the old file kept as .bak; values given with -set are filled in.
func TestGenerateConfigUpgradesInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	old := "matrix:\n  homeserver: https://matrix.mine.test\n  user_id: '@rec:mine.test'\n  password: hunter2\nrecordings:\n  max_size: 2GB\n"
	if err := os.WriteFile(path, []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-generate-config", "-c", path, "-set", "calls.max_calls=5"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	got, _ := os.ReadFile(path)
	bak, _ := os.ReadFile(path + ".bak")
	if string(bak) != old {
		t.Errorf("the old file was not kept as .bak: %q", bak)
	}
	for _, want := range []string{"homeserver: https://matrix.mine.test\n", "password: hunter2\n", "  max_size: 2GB\n", "  max_calls: 5\n", "# Recovery point: media reaches the files"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("upgraded file lacks %q", want)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the file's mode changed: %v", fi.Mode())
	}
	if !strings.Contains(out.String(), "Upgraded "+path) || !strings.Contains(out.String(), "Run it with: matrix-recorder -c "+path) {
		t.Errorf("output: %s", out.String())
	}
	out.Reset()
	if code := run([]string{"-generate-config", "-c", path, "-set", "calls.max_calls=5"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "is up to date") {
		t.Errorf("second run: exit %d, %s", code, out.String())
	}
	// A file whose keys would be lost is left alone.
	if err := os.WriteFile(path, []byte("matrix:\n  homesever: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"-generate-config", "-c", path}, &out, &errb); code != exitConfig || !strings.Contains(errb.String(), "matrix.homesever: unknown key") {
		t.Errorf("unknown key: exit %d, %s", code, errb.String())
	}
}

package config

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// commentLines returns the comment lines of a YAML text, trimmed.
func commentLines(data []byte) []string {
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// wantEveryComment checks that every comment of the example is in data, in order.
func wantEveryComment(t *testing.T, data []byte) {
	t.Helper()
	got := commentLines(data)
	i := 0
	for _, c := range commentLines(Example) {
		for i < len(got) && got[i] != c {
			i++
		}
		if i == len(got) {
			t.Errorf("the comment %q of the example is missing (or out of order)", c)
			return
		}
	}
}

func TestGenerateNewIsTheExample(t *testing.T) {
	g, err := Generate(nil, "new.yaml", Options{Environ: []string{"MATRIX_RECORDER_CI=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.Data, Example) {
		t.Errorf("with nothing to fill in the output is not the example:\n%s", g.Data)
	}
}

// A new operator's values (-set, the environment) land in the annotated example; the
// defaults stay as the example shows them, comments and all; secrets from the environment
// stay there.
func TestGenerateFillsInValues(t *testing.T) {
	environ := []string{"MATRIX_RECORDER_MATRIX_USER_ID=@rec:mine.test", "MATRIX_RECORDER_MATRIX_PASSWORD=hunter2", "MATRIX_RECORDER_BOT_ALLOWED_INVITERS=:mine.test, @boss:other.test"}
	g, err := Generate(nil, "new.yaml", Options{Environ: environ, Set: []string{"matrix.homeserver=https://matrix.mine.test", "recordings.max_duration=2h"}})
	if err != nil {
		t.Fatal(err)
	}
	out := string(g.Data)
	for _, want := range []string{"  homeserver: https://matrix.mine.test\n", "  user_id: \"@rec:mine.test\"\n", "  max_duration: 2h\n", "  max_duration: 0s\n", "  password: \"\"\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "hunter2") || !reflect.DeepEqual(g.FromEnv, []string{"matrix.password"}) {
		t.Errorf("a secret from the environment was written (or not reported): %v", g.FromEnv)
	}
	if !reflect.DeepEqual(g.Kept, []string{"matrix.homeserver", "matrix.user_id", "recordings.max_duration", "bot.allowed_inviters"}) {
		t.Errorf("kept %v", g.Kept)
	}
	wantEveryComment(t, g.Data)
	if strings.Count(out, "\n") != strings.Count(string(Example), "\n") {
		t.Errorf("the layout changed: %d lines, the example has %d", strings.Count(out, "\n"), strings.Count(string(Example), "\n"))
	}
	l, err := Read(g.Data, "new.yaml", Options{Environ: environ})
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Matrix.Homeserver != "https://matrix.mine.test" || l.Config.Recordings.MaxDuration.D().Hours() != 2 ||
		!reflect.DeepEqual(l.Config.Bot.AllowedInviters, []string{":mine.test", "@boss:other.test"}) {
		t.Errorf("read back: %+v", l.Config)
	}
}

const oldConfig = `# our recorder
matrix:
  homeserver: https://matrix.mine.test   # the big one
  user_id: "@rec:mine.test"
  password: hunter2
recordings:
  folder: /srv/recordings
  max_size: 2GB
  dir_mode: "0750"
bot:
  allowed_inviters:
    - ":mine.test"
    - "@boss:other.test"
livekit:
  deployments:
    - name: meet
      url: wss://lk.mine.test
      api_key: APIreal
      api_secret_env: LK_SECRET
      allowed_rooms: [{matrix_room: "!a:mine.test", livekit_rooms: ["*"]}]
`

// An existing config is upgraded key by key: every value it sets is kept (a renamed key
// under its new name), everything else reads like the example, with its comments.
func TestGenerateUpgradesAnOldConfig(t *testing.T) {
	renames := []Rename{{Old: "recordings.folder", New: "recordings.dir"}}
	g, err := Generate([]byte(oldConfig), "old.yaml", Options{renames: renames})
	if err != nil {
		t.Fatal(err)
	}
	wantEveryComment(t, g.Data)
	out := string(g.Data)
	for _, want := range []string{"homeserver: https://matrix.mine.test # the big one\n", "  dir: /srv/recordings\n", "password: hunter2\n", "api_key: APIreal\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("upgraded file lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "folder:") || len(g.Warnings) != 1 || !strings.Contains(g.Warnings[0], "recordings.folder is now called recordings.dir") {
		t.Errorf("renamed key: warnings %v", g.Warnings)
	}
	// The same configuration as before, read from either file.
	t.Setenv("LK_SECRET", "0123456789abcdef0123456789abcdef")
	before, err := Read([]byte(oldConfig), "old.yaml", Options{renames: renames})
	if err != nil {
		t.Fatal(err)
	}
	after, err := Read(g.Data, "new.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	// (Compared as YAML: an empty list the example spells out is no list at all before.)
	b, _ := yaml.Marshal(before.Config)
	a, _ := yaml.Marshal(after.Config)
	if !bytes.Equal(a, b) {
		t.Errorf("the upgrade changed the configuration:\n%s\n%s", b, a)
	}
	// Upgrading again changes nothing.
	again, err := Generate(g.Data, "new.yaml", Options{renames: renames})
	if err != nil || !bytes.Equal(again.Data, g.Data) {
		t.Errorf("second upgrade differs (%v)", err)
	}
}

// A file whose keys would be lost is not upgraded.
func TestGenerateRefusesUnknownKeys(t *testing.T) {
	_, err := Generate([]byte("matrix:\n  homesever: https://x\ncalls:\n  max_calls: many\n"), "old.yaml", Options{})
	var cerr *Error
	if !errors.As(err, &cerr) || len(cerr.Problems) != 2 || !strings.Contains(err.Error(), "matrix.homesever: unknown key; did you mean matrix.homeserver?") {
		t.Fatalf("got %v", err)
	}
}

// The example at the repository's root (what people copy) is the one the binary embeds.
func TestRootExampleIsTheEmbeddedOne(t *testing.T) {
	root, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Skipf("no repository checkout: %v", err)
	}
	if !bytes.Equal(root, Example) {
		t.Error("config.example.yaml differs from config/config.example.yaml: copy config/config.example.yaml over it")
	}
}

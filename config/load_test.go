package config

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const account = "matrix:\n  homeserver: https://hs.example\n  user_id: '@a:b'\n  access_token: t\n"

// read loads a config from text with the given environment only.
func read(t *testing.T, yaml string, environ ...string) (*Loaded, *Error) {
	t.Helper()
	l, err := Read([]byte(yaml), "config.yaml", Options{Environ: environ})
	if err == nil {
		return l, nil
	}
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error %v is not a *config.Error", err)
	}
	return nil, cerr
}

// problemLines returns the problems as the operator reads them.
func problemLines(e *Error) []string {
	if e == nil {
		return nil
	}
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.String()
	}
	return out
}

func wantProblems(t *testing.T, e *Error, want ...string) {
	t.Helper()
	lines := problemLines(e)
	for _, w := range want {
		found := false
		for _, l := range lines {
			if strings.Contains(l, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem says %q; got:\n  %s", w, strings.Join(lines, "\n  "))
		}
	}
}

// A file with mistakes of every kind gets one answer that lists them all, each with its
// dotted key and its line: decoding (types, durations, unknown keys) and validation alike.
func TestEveryProblemListedAtOnce(t *testing.T) {
	_, e := read(t, `matrix:
  homeserver: https://matrix.example.org
  user_id: "@recorder:example.org"
  password: pw
calls:
  max_duration: 90
  max_tracks: lots
recordings:
  dirr: /srv
  fsync: maybe
webrtc:
  udp_port: 70000
http:
  listen: "localhost:http"
log:
  level: verbose
`)
	if e == nil {
		t.Fatal("accepted")
	}
	wantProblems(t, e,
		`calls.max_duration: missing unit in "90"`,
		`calls.max_tracks: must be a whole number, not "lots" (line 7)`,
		`recordings.dirr: unknown key; did you mean recordings.dir? (line 9)`,
		`recordings.fsync: must be true or false, not "maybe" (line 10)`,
		`webrtc.udp_port: must be a whole number from 0 to 65535, not "70000" (line 12)`,
		`http.listen "localhost:http" must end in a port number`,
		`log.level "verbose" must be one of trace, debug, info, warn, error (line 16)`,
		`matrix.homeserver is still the example's https://matrix.example.org: fill in`,
		`matrix.user_id is still the example's @recorder:example.org: fill in`,
	)
	if len(e.Problems) != 9 {
		t.Errorf("%d problems, want 9:\n%v", len(e.Problems), e)
	}
	for _, l := range problemLines(e) {
		for _, goName := range []string{"uint16", " int", "config.", "!!", "unmarshal", "time:"} {
			if strings.Contains(l, goName) {
				t.Errorf("%q speaks Go or yaml.v3 (%q)", l, goName)
			}
		}
	}
	if !strings.HasPrefix(e.Error(), "config.yaml has 9 problems:\n  - ") {
		t.Errorf("message starts %q", e.Error()[:40])
	}
}

func TestTypeErrorsNameTheKey(t *testing.T) {
	for in, want := range map[string]string{
		"recordings:\n  flush_interval: soon\n":                             `recordings.flush_interval: invalid duration "soon"`,
		"recordings:\n  max_size: lots\n":                                   `recordings.max_size: size "lots": want a number`,
		"recordings:\n  max_size: [1]\n":                                    `recordings.max_size: must be a single value, not a list`,
		"recordings:\n  dir: [a, b]\n":                                      `recordings.dir: must be a single value, not a list`,
		"recordings:\n  dir_mode: rwx\n":                                    `recordings.dir_mode: mode "rwx" must be octal`,
		"webrtc:\n  public_ips: 1.2.3.4\n":                                  `webrtc.public_ips: must be a list such as ["a", "b"], not "1.2.3.4"`,
		"webrtc: 5\n":                                                       `webrtc: this section must hold keys`,
		"postcall:\n  transcript:\n    headers: [a]\n":                      `postcall.transcript.headers: must be a mapping such as {Name: value}, not a list`,
		"livekit:\n  deployments:\n    - name: a\n      poll_interval: 2\n": `livekit.deployments[0].poll_interval: missing unit in "2"`,
		"matrix:\n  password: [secret-in-a-list]\n":                         `matrix.password: must be a single value, not a list`,
		"bot:\n  notices: true\n  notices: false\n":                         `bot.notices: set twice (lines 6 and 7)`,
	} {
		_, e := read(t, account+in)
		if e == nil {
			t.Errorf("%q accepted", in)
			continue
		}
		wantProblems(t, e, want)
	}
	// A secret's value is never repeated in a message.
	_, e := read(t, account+"http:\n  webhook_token: {a: hunter2}\n")
	if e == nil || strings.Contains(e.Error(), "hunter2") {
		t.Errorf("secret echoed or accepted: %v", e)
	}
}

// log.level and http.listen were checked only when used (the logger, the listener); now
// with everything else.
func TestLateChecksMovedIntoValidation(t *testing.T) {
	for in, want := range map[string]string{
		"log:\n  level: verbose\n":        "log.level",
		"log:\n  level: ''\n":             "log.level",
		"http:\n  listen: 'host:99999'\n": "http.listen",
		"http:\n  listen: 'a b:80'\n":     "http.listen",
		"http:\n  listen: ':http'\n":      "http.listen",
		"bot:\n  command_prefix: '! '\n":  "bot.command_prefix",
		"matrix:\n  recovery_key: EsTx\n": "matrix.recovery_key",
	} {
		_, e := read(t, account+in)
		if e == nil {
			t.Errorf("%q accepted", in)
			continue
		}
		wantProblems(t, e, want)
	}
	for _, ok := range []string{"log:\n  level: DEBUG\n", "http:\n  listen: ':8080'\n", "http:\n  listen: '[::1]:8080'\n",
		"http:\n  listen: 'localhost:0'\n", "http:\n  listen: '0.0.0.0:8080'\n"} {
		if _, e := read(t, account+ok); e != nil {
			t.Errorf("%q refused: %v", ok, e)
		}
	}
}

// The example's placeholders are refused, with a message saying to fill them in; the
// example with them filled in has nothing else wrong.
func TestPlaceholdersRefused(t *testing.T) {
	_, e := read(t, string(Example), "MATRIX_RECORDER_MATRIX_PASSWORD=pw")
	if e == nil {
		t.Fatal("the unfilled example was accepted")
	}
	wantProblems(t, e, "matrix.homeserver is still the example's", "matrix.user_id is still the example's")
	if len(e.Problems) != 2 {
		t.Errorf("problems beyond the placeholders: %v", e)
	}
	dep := func(url, key string) string {
		return account + "livekit:\n  deployments:\n    - name: meet\n      url: " + url + "\n      api_key: " + key + "\n      api_secret: 0123456789abcdef0123456789abcdef\n"
	}
	_, e = read(t, dep(exampleLiveKitURL, exampleLiveKitAPIKey)+"  trusted_jwt_services: ['"+exampleJWTService+"']\nwebrtc:\n  ice_servers: [{urls: ['"+exampleTURN+"']}]\n")
	wantProblems(t, e, "livekit.deployments[meet].url: "+exampleLiveKitURL+" is the example's", "livekit.deployments[meet].api_key: APIxxxxxxxx is the example's",
		"livekit.trusted_jwt_services[0]: "+exampleJWTService+" is the example's", "webrtc.ice_servers[0].urls: "+exampleTURN+" is the example's")
	if _, e := read(t, dep("wss://lk.mine.test", "APIreal")); e != nil {
		t.Errorf("a real deployment refused: %v", e)
	}
	for _, p := range []string{"https://matrix.example.org", "@recorder:example.org", exampleLiveKitURL, exampleLiveKitAPIKey, exampleJWTService, exampleTURN} {
		if !strings.Contains(string(Example), p) {
			t.Errorf("the example does not show the placeholder %q any more", p)
		}
	}
}

// The example documents every key, so -generate-config has a place (and a comment) for
// each.
func TestExampleHasEveryKey(t *testing.T) {
	root, err := parseRoot(Example)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if kn, _ := lookup(root, k); kn == nil {
			t.Errorf("the example has no %s", k)
		}
	}
}

// A renamed key keeps working for a release, with a warning that names both names; the
// old environment variable too. Setting both names is a problem.
func TestRenamedKeyWarns(t *testing.T) {
	renames := []Rename{{Old: "recordings.folder", New: "recordings.dir"}, {Old: "calls.max_length", New: "recordings.max_duration"}}
	in := account + "recordings:\n  folder: /srv/rec\ncalls:\n  max_length: 2h\n"
	if _, err := Read([]byte(in), "c", Options{}); err == nil || !strings.Contains(err.Error(), "recordings.folder: unknown key") {
		t.Fatalf("without the rename: %v", err)
	}
	l, err := Read([]byte(in), "c", Options{renames: renames})
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Recordings.Dir != "/srv/rec" || l.Config.Recordings.MaxDuration.D().Hours() != 2 {
		t.Errorf("renamed values not applied: %+v", l.Config.Recordings)
	}
	w := strings.Join(l.Warnings, "\n")
	for _, want := range []string{"recordings.folder is now called recordings.dir", "(line 6)", "calls.max_length is now called recordings.max_duration"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings %q do not say %q", w, want)
		}
	}
	_, err = Read([]byte(account+"recordings:\n  folder: /a\n  dir: /b\n"), "c", Options{renames: renames})
	if err == nil || !strings.Contains(err.Error(), "recordings.folder is the old name of recordings.dir, which is set too") {
		t.Errorf("old and new both set: %v", err)
	}
	l, err = Read([]byte(account), "c", Options{renames: renames, Environ: []string{"MATRIX_RECORDER_RECORDINGS_FOLDER=/env"}})
	if err != nil || l.Config.Recordings.Dir != "/env" || !strings.Contains(strings.Join(l.Warnings, ""), "MATRIX_RECORDER_RECORDINGS_DIR") {
		t.Errorf("old variable: %v %+v %v", err, l, l.Warnings)
	}
	if len(renamed) != 0 {
		for _, r := range renamed {
			if indexKeys(keysOf(typeOfConfig()))[r.New].Path == "" {
				t.Errorf("rename %s → %s: no such key", r.Old, r.New)
			}
		}
	}
}

// The integration harness writes a config.Config with yaml.Marshal and starts the binary
// with it: what Marshal writes must load, to the same configuration.
func TestMarshalledConfigLoads(t *testing.T) {
	c := Default()
	c.Matrix.Homeserver, c.Matrix.UserID, c.Matrix.Password = "http://127.0.0.1:8008", "@rec:localhost", "pw"
	c.Recordings.MaxSize, c.Recordings.DirMode = 2<<30, 0o750
	c.WebRTC.ICEServers = []ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}}
	d := DefaultLiveKitDeployment()
	d.Name, d.URL, d.APIKey, d.APISecret = "lk", "ws://127.0.0.1:7880", "key", "0123456789abcdef0123456789abcdef"
	d.AllowedRooms = []LiveKitRoomGrant{{MatrixRoom: "!r:localhost", LiveKitRooms: []string{"*"}}}
	c.LiveKit.Deployments = []LiveKitDeployment{d}
	data, err := yaml.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Read(data, "marshalled", Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	again, _ := yaml.Marshal(&l.Config) // (nil and empty lists both read back as empty)
	if string(again) != string(data) || l.Config.Recordings.MaxSize != c.Recordings.MaxSize || l.Config.LiveKit.Deployments[0].PollInterval != d.PollInterval {
		t.Errorf("round trip changed the config:\n%s\n%s", data, again)
	}
}

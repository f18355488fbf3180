package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const lkBase = "matrix:\n  homeserver: https://hs.example\n  user_id: '@a:b'\n  access_token: t\n"

func TestLiveKitDeploymentDefaults(t *testing.T) {
	cfg, err := Parse(strings.NewReader(lkBase + `livekit:
  deployments:
    - name: meet
      url: wss://lk.example.org
      api_key: key
      api_secret: 0123456789abcdef0123456789abcdef
      meet_url_prefixes: [https://meet.example.org/]
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.LiveKit.Deployments) != 1 {
		t.Fatalf("deployments: %+v", cfg.LiveKit.Deployments)
	}
	d := cfg.LiveKit.Deployments[0]
	def := DefaultLiveKitDeployment()
	if d.DefaultMode != def.DefaultMode || d.Layout != def.Layout || d.Output != def.Output || d.WebhookPath != def.WebhookPath ||
		d.PollInterval != def.PollInterval || d.StartTimeout != def.StartTimeout {
		t.Fatalf("defaults not applied: %+v", d)
	}
	if d.HTTPURL() != "https://lk.example.org" {
		t.Fatalf("HTTPURL = %s", d.HTTPURL())
	}
	if s, err := d.Secret(); err != nil || s != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("Secret = %q, %v", s, err)
	}
}

func TestLiveKitDeploymentUnknownKeyIsNamed(t *testing.T) {
	_, err := Parse(strings.NewReader(lkBase + "livekit:\n  deployments:\n    - name: meet\n      url: wss://x\n      api_key: k\n      api_secret: 0123456789abcdef0123456789abcdef\n      layuot: grid\n"))
	if err == nil || !strings.Contains(err.Error(), "layuot") {
		t.Fatalf("want an error naming the unknown key, got %v", err)
	}
}

func TestLiveKitSecretSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("from-file-0123456789abcdef0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LK_SECRET_TEST", "from-env-0123456789abcdef0123456789")
	for _, tc := range []struct{ yaml, want string }{
		{"api_secret_file: " + file, "from-file-0123456789abcdef0123456789"},
		{"api_secret_env: LK_SECRET_TEST", "from-env-0123456789abcdef0123456789"},
	} {
		cfg, err := Parse(strings.NewReader(lkBase + "livekit:\n  deployments:\n    - name: x\n      url: ws://127.0.0.1:7880\n      api_key: k\n      " + tc.yaml + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := cfg.LiveKit.Deployments[0].Secret()
		if err != nil || got != tc.want {
			t.Errorf("%s: Secret() = %q, %v", tc.yaml, got, err)
		}
	}
	d := DefaultLiveKitDeployment()
	d.Name, d.APISecretEnv = "x", "LK_SECRET_UNSET_FOR_TEST"
	if _, err := d.Secret(); err == nil || !strings.Contains(err.Error(), "LK_SECRET_UNSET_FOR_TEST") {
		t.Errorf("an empty environment variable gave %v", err)
	}
}

func TestLiveKitValidation(t *testing.T) {
	dep := func(extra string) string {
		return lkBase + "livekit:\n  deployments:\n    - name: meet\n      url: wss://lk.example.org\n      api_key: k\n      api_secret: 0123456789abcdef0123456789abcdef\n" + extra
	}
	cases := map[string]string{
		dep("      default_mode: mixed\n"):               "default_mode",
		dep("      output: ftp\n"):                       "output",
		dep("      output: s3\n"):                        "needs storage.s3",
		dep("      webhook_path: /s3/events\n"):          "webhook_path",
		dep("      webhook_path: nope\n"):                "webhook_path",
		dep("      poll_interval: 1ms\n"):                "poll_interval",
		dep("      meet_url_prefixes: [meet.example]\n"): "meet_url_prefixes",
		dep("      api_secret_env: X\n"):                 "exactly one",
		dep("      local_dir: relative/dir\n"):           "local_dir",
		dep("    - name: meet\n      url: wss://y\n      api_key: k2\n      api_secret: 0123456789abcdef0123456789abcdef\n"):                                  "used twice",
		lkBase + "livekit:\n  deployments:\n    - name: Bad_Name\n      url: wss://x\n      api_key: k\n      api_secret: 0123456789abcdef0123456789abcdef\n": "name",
		lkBase + "livekit:\n  deployments:\n    - name: a\n      url: ftp://x\n      api_key: k\n      api_secret: 0123456789abcdef0123456789abcdef\n":        "url",
		lkBase + "livekit:\n  deployments:\n    - name: a\n      url: wss://x\n      api_key: k\n      api_secret: short\n":                                   "32 characters",
		lkBase + "livekit:\n  record_element_call_with_egress: true\n":                                                                                        "at least one",
	}
	for in, want := range cases {
		_, err := Parse(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error mentioning %q, got %v\nfor:\n%s", want, err, in)
		}
	}
	// Two deployments on one webhook path with different keys are fine.
	_, err := Parse(strings.NewReader(dep("    - name: other\n      url: wss://y\n      api_key: k2\n      api_secret: 0123456789abcdef0123456789abcdef\n      poll_interval: 5s\n")))
	if err != nil {
		t.Fatal(err)
	}
}

func TestExampleHasLiveKitDefaults(t *testing.T) {
	t.Setenv(EnvPassword, "secret")
	cfg, err := Parse(strings.NewReader(filledExample()))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.LiveKit.Deployments) != 0 || cfg.LiveKit.RecordElementCallWithEgress {
		t.Fatalf("the example enables Egress: %+v", cfg.LiveKit)
	}
	// Every default in the commented example entry matches the code's.
	d := DefaultLiveKitDeployment()
	for _, want := range []string{"default_mode: " + d.DefaultMode, "layout: " + d.Layout, "output: " + d.Output,
		"webhook_path: " + d.WebhookPath, "poll_interval: " + d.PollInterval.D().String(), "start_timeout: " + (time.Duration(d.StartTimeout)).String(),
		"allowed_rooms: []", "allowed_users: []", "allow_all: false", "matrix_room:", "livekit_rooms:"} {
		if !strings.Contains(string(Example), want) {
			t.Errorf("the example does not show %q", want)
		}
	}
}

// Who may record what: nothing by default; grants by room id or alias with names and
// patterns, users, allow_all; strict keys; errors that name the dotted key.
func TestLiveKitAccess(t *testing.T) {
	dep := func(extra string) string {
		return lkBase + "livekit:\n  deployments:\n    - name: meet\n      url: wss://lk.example.org\n      api_key: k\n      api_secret: 0123456789abcdef0123456789abcdef\n" + extra
	}
	cfg, err := Parse(strings.NewReader(dep("")))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.LiveKit.Deployments[0].LiveKitAccess; a.AllowAll || len(a.AllowedRooms) != 0 || len(a.AllowedUsers) != 0 {
		t.Fatalf("a deployment allows something by default: %+v", a)
	}
	cfg, err = Parse(strings.NewReader(dep(`      allowed_rooms:
        - matrix_room: "!AbC:example.org"
          livekit_rooms: [weekly-call, "team-*"]
        - matrix_room: "#ops:example.org"
          livekit_rooms: ["*"]
      allowed_users: ["@admin:example.org"]
      allow_all: true
`)))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.LiveKit.Deployments[0].LiveKitAccess
	if len(a.AllowedRooms) != 2 || a.AllowedRooms[0].MatrixRoom != "!AbC:example.org" || len(a.AllowedRooms[0].LiveKitRooms) != 2 ||
		a.AllowedRooms[1].LiveKitRooms[0] != "*" || len(a.AllowedUsers) != 1 || !a.AllowAll {
		t.Fatalf("access: %+v", a)
	}
	cases := map[string]string{
		dep("      allowed_rooms:\n        - matrix_room: '!a:b'\n          livekit_room: [x]\n"):      "livekit_room",
		dep("      allowed_rooms:\n        - matrix_room: 'team'\n          livekit_rooms: [x]\n"):     "livekit.deployments[meet].allowed_rooms[0].matrix_room",
		dep("      allowed_rooms:\n        - matrix_room: '@u:b'\n          livekit_rooms: [x]\n"):     "livekit.deployments[meet].allowed_rooms[0].matrix_room",
		dep("      allowed_rooms:\n        - matrix_room: '!a:b'\n"):                                   "livekit.deployments[meet].allowed_rooms[0].livekit_rooms must list",
		dep("      allowed_rooms:\n        - matrix_room: '!a:b'\n          livekit_rooms: ['a b']\n"): "livekit.deployments[meet].allowed_rooms[0].livekit_rooms",
		dep("      allowed_rooms: ['!a:b']\n"):                                                         "must be a mapping",
		dep("      allowed_users: [admin]\n"):                                                          "livekit.deployments[meet].allowed_users",
		dep("      allow_al: true\n"):                                                                  "allow_al",
	}
	for in, want := range cases {
		_, err := Parse(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error mentioning %q, got %v\nfor:\n%s", want, err, in)
		}
	}
	if got := DeploymentKey("meet", "allowed_rooms"); got != "livekit.deployments[meet].allowed_rooms" {
		t.Errorf("DeploymentKey = %s", got)
	}
}

// A config written back out (as tools and the test harness do) keeps the access keys.
func TestLiveKitAccessRoundTrip(t *testing.T) {
	cfg, err := Parse(strings.NewReader(lkBase + `livekit:
  deployments:
    - name: meet
      url: wss://lk.example.org
      api_key: k
      api_secret: 0123456789abcdef0123456789abcdef
      allowed_rooms: [{matrix_room: "#team:example.org", livekit_rooms: ["team-*"]}]
      allowed_users: ["@admin:example.org"]
`))
	if err != nil {
		t.Fatal(err)
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	a := again.LiveKit.Deployments[0].LiveKitAccess
	if len(a.AllowedRooms) != 1 || a.AllowedRooms[0].MatrixRoom != "#team:example.org" || a.AllowedRooms[0].LiveKitRooms[0] != "team-*" ||
		len(a.AllowedUsers) != 1 || a.AllowAll {
		t.Fatalf("after a round trip: %+v\n%s", a, data)
	}
}

func TestTrustedJWTServices(t *testing.T) {
	cfg, err := Parse(strings.NewReader(lkBase + "livekit:\n  trusted_jwt_services: [\"https://jwt.example.org\", \"http://127.0.0.1:8080/\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.LiveKit.TrustedJWTServices) != 2 {
		t.Fatalf("trusted services %v", cfg.LiveKit.TrustedJWTServices)
	}
	for _, bad := range []string{"jwt.example.org", "ftp://jwt.example.org", "https://user:pw@jwt.example.org", "https://jwt.example.org/?x=1", "https://jwt.example.org/#f", "https://"} {
		_, err := Parse(strings.NewReader(lkBase + "livekit:\n  trusted_jwt_services: [\"" + bad + "\"]\n"))
		if err == nil || !strings.Contains(err.Error(), "livekit.trusted_jwt_services[0]") {
			t.Errorf("%q: want an error naming livekit.trusted_jwt_services[0], got %v", bad, err)
		}
	}
	// The example lists none: nothing is trusted beyond what homeservers advertise.
	t.Setenv(EnvPassword, "secret")
	ex, err := Parse(strings.NewReader(filledExample()))
	if err != nil || len(ex.LiveKit.TrustedJWTServices) != 0 || Default().LiveKit.TrustedJWTServices == nil {
		t.Fatalf("example trusts %v (err %v)", ex.LiveKit.TrustedJWTServices, err)
	}
}

package config

import (
	"strings"
	"testing"
	"time"
)

// filledExample is the example config with its placeholders filled in, as an operator
// would.
func filledExample() string {
	return strings.NewReplacer("https://matrix.example.org", "https://matrix.recorder.test",
		"@recorder:example.org", "@recorder:recorder.test").Replace(string(Example))
}

func TestExampleConfigLoads(t *testing.T) {
	t.Setenv(EnvPassword, "secret")
	cfg, err := Parse(strings.NewReader(filledExample()))
	if err != nil {
		t.Fatalf("example config does not load: %v", err)
	}
	if cfg.Matrix.Homeserver != "https://matrix.recorder.test" || cfg.Matrix.UserID != "@recorder:recorder.test" {
		t.Fatalf("unexpected matrix section: %+v", cfg.Matrix)
	}
	if cfg.Matrix.Password != "secret" {
		t.Fatalf("password from environment not applied")
	}
	def := Default()
	if cfg.Recordings.FlushInterval != def.Recordings.FlushInterval || cfg.Recordings.GapPolicy != def.Recordings.GapPolicy ||
		cfg.Calls.ICETimeout != def.Calls.ICETimeout || cfg.Calls.MaxTracks != def.Calls.MaxTracks {
		t.Fatalf("example config disagrees with the defaults: %+v vs %+v", cfg, def)
	}
}

func TestUnknownKeyIsNamed(t *testing.T) {
	_, err := Parse(strings.NewReader("matrix:\n  homeserver: https://hs\n  user_id: '@a:b'\n  pasword: x\n"))
	if err == nil || !strings.Contains(err.Error(), "pasword") {
		t.Fatalf("want an error naming the unknown key, got %v", err)
	}
}

func TestMissingAccountExplains(t *testing.T) {
	_, err := Parse(strings.NewReader(""))
	if err == nil {
		t.Fatal("empty config accepted")
	}
	for _, want := range []string{"matrix.homeserver", "matrix.user_id", "matrix.password"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestValidation(t *testing.T) {
	base := "matrix:\n  homeserver: https://hs.example\n  user_id: '@a:b'\n  access_token: t\n"
	cases := map[string]string{
		"recordings:\n  gap_policy: drop\n":                                        "gap_policy",
		"recordings:\n  flush_interval: 10m\n":                                     "flush_interval",
		"recordings:\n  flush_interval: soon\n":                                    "duration",
		"webrtc:\n  udp_port_min: 5000\n":                                          "udp_port_min",
		"webrtc:\n  udp_port: 5000\n  udp_port_min: 1\n  udp_port_max: 2\n":        "either",
		"log:\n  format: xml\n":                                                    "log.format",
		"calls:\n  max_tracks: 0\n":                                                "max_tracks",
		"bot:\n  recording_displayname_format: \"\"\n":                             "bot.recording_displayname_format must not be empty",
		"bot:\n  recording_displayname_format: \"a\\nb\"\n":                        "bot.recording_displayname_format must not contain control",
		"bot:\n  recording_displayname_format: " + strings.Repeat("x", 101) + "\n": "bot.recording_displayname_format is 101 characters",
	}
	for extra, want := range cases {
		_, err := Parse(strings.NewReader(base + extra))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want error mentioning %q, got %v", extra, want, err)
		}
	}
	cfg, err := Parse(strings.NewReader(base + "recordings:\n  flush_interval: 250ms\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Recordings.FlushInterval.D() != 250*time.Millisecond {
		t.Fatalf("flush_interval = %s", cfg.Recordings.FlushInterval.D())
	}
}

// The defaults hold on an open federation: invites only from the bot's own server, a
// recording cannot run for ever, files are private.
func TestSafeDefaults(t *testing.T) {
	d := Default()
	if d.Recordings.MaxDuration.D() != 6*time.Hour || d.Recordings.MaxPerRoom < 1 || d.Recordings.MaxPerInviter < 1 || d.Calls.MaxGroupRecordings < 1 {
		t.Errorf("limits: %+v %+v", d.Recordings, d.Calls)
	}
	if d.Recordings.DirMode != 0o700 || d.Recordings.FileMode != 0o600 {
		t.Errorf("modes %s %s", d.Recordings.DirMode, d.Recordings.FileMode)
	}
	for sender, want := range map[string]bool{
		"@alice:example.org": true, "@eve:evil.example": false, "@eve:notexample.org": false, "@x:example.org.evil": false,
	} {
		if got := d.Bot.InviterAllowed(sender, "example.org"); got != want {
			t.Errorf("default: InviterAllowed(%s) = %v", sender, got)
		}
	}
	// The example config says the same.
	t.Setenv(EnvPassword, "secret")
	ex, err := Parse(strings.NewReader(filledExample()))
	if err != nil {
		t.Fatal(err)
	}
	if ex.Recordings.MaxDuration != d.Recordings.MaxDuration || ex.Recordings.MaxPerRoom != d.Recordings.MaxPerRoom ||
		ex.Recordings.MaxPerInviter != d.Recordings.MaxPerInviter || ex.Recordings.DirMode != d.Recordings.DirMode ||
		ex.Recordings.FileMode != d.Recordings.FileMode || ex.Recordings.LowFreeSpace != d.Recordings.LowFreeSpace ||
		ex.Calls.MaxGroupRecordings != d.Calls.MaxGroupRecordings || len(ex.Bot.AllowedInviters) != 0 || ex.Storage.LinksByDM {
		t.Errorf("the example disagrees with the defaults: %+v %+v", ex.Recordings, ex.Calls)
	}
	open := Bot{AllowedInviters: []string{"*"}}
	if !open.InviterAllowed("@eve:evil.example", "example.org") {
		t.Error(`"*" does not open invites`)
	}
	// A list set before the default changed keeps its meaning.
	old := Bot{AllowedInviters: []string{"@boss:other.example", ":partner.example"}}
	for sender, want := range map[string]bool{"@boss:other.example": true, "@a:partner.example": true, "@a:example.org": false} {
		if got := old.InviterAllowed(sender, "example.org"); got != want {
			t.Errorf("list: InviterAllowed(%s) = %v", sender, got)
		}
	}
}

func TestModesAndLimitsValidation(t *testing.T) {
	base := "matrix:\n  homeserver: https://hs.example\n  user_id: '@a:b'\n  access_token: t\n"
	cfg, err := Parse(strings.NewReader(base + "recordings:\n  dir_mode: \"0750\"\n  file_mode: 640\nbot:\n  allowed_inviters: ['*', ':example.org', '@a:b']\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Recordings.DirMode != 0o750 || cfg.Recordings.FileMode != 0o640 {
		t.Errorf("modes: %s %s", cfg.Recordings.DirMode, cfg.Recordings.FileMode)
	}
	for extra, want := range map[string]string{
		"recordings:\n  dir_mode: \"0600\"\n":       "dir_mode",
		"recordings:\n  file_mode: \"0700\"\n":      "file_mode",
		"recordings:\n  file_mode: \"0400\"\n":      "file_mode",
		"recordings:\n  file_mode: rw\n":            "octal",
		"recordings:\n  dir_mode: \"1777\"\n":       "octal",
		"recordings:\n  max_per_room: -1\n":         "max_per_room",
		"recordings:\n  low_free_space: 1MB\n":      "low_free_space",
		"calls:\n  max_group_recordings: 0\n":       "max_group_recordings",
		"bot:\n  allowed_inviters: [example.org]\n": "allowed_inviters",
		"bot:\n  allowed_inviters: ['@nobody']\n":   "allowed_inviters",
	} {
		_, err := Parse(strings.NewReader(base + extra))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one mentioning %q", extra, err, want)
		}
	}
}

// A clean stop pauses recordings and the display name shows a recording, unless the
// operator says otherwise; the mark is made from the global name.
func TestRestartDefaults(t *testing.T) {
	d := Default()
	if !d.Recordings.PauseOnShutdown || !d.Bot.RecordingDisplayName {
		t.Errorf("defaults: pause_on_shutdown %v, recording_displayname %v", d.Recordings.PauseOnShutdown, d.Bot.RecordingDisplayName)
	}
	if got := d.Bot.RecordingName("Recorder"); got != "🔴 Recording · Recorder" {
		t.Errorf("mark %q", got)
	}
	base := "matrix:\n  homeserver: https://hs.example\n  user_id: '@a:b'\n  access_token: t\n"
	cfg, err := Parse(strings.NewReader(base + "recordings:\n  pause_on_shutdown: false\nbot:\n  recording_displayname: false\n  recording_displayname_format: \"\"\n"))
	if err != nil || cfg.Recordings.PauseOnShutdown || cfg.Bot.RecordingDisplayName {
		t.Errorf("turned off: %v %+v", err, cfg.Bot)
	}
}

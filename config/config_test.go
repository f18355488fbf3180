package config

import (
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	t.Setenv(EnvPassword, "secret")
	cfg, err := Parse(strings.NewReader(string(Example)))
	if err != nil {
		t.Fatalf("example config does not load: %v", err)
	}
	if cfg.Matrix.Homeserver != "https://matrix.example.org" || cfg.Matrix.UserID != "@recorder:example.org" {
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
		"recordings:\n  gap_policy: drop\n":                                 "gap_policy",
		"recordings:\n  flush_interval: 10m\n":                              "flush_interval",
		"recordings:\n  flush_interval: soon\n":                             "duration",
		"webrtc:\n  udp_port_min: 5000\n":                                   "udp_port_min",
		"webrtc:\n  udp_port: 5000\n  udp_port_min: 1\n  udp_port_max: 2\n": "either",
		"log:\n  format: xml\n":                                             "log.format",
		"calls:\n  max_tracks: 0\n":                                         "max_tracks",
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

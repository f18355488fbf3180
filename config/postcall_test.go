package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestPostCallExampleIsTheDefault(t *testing.T) {
	t.Setenv(EnvPassword, "secret")
	cfg, err := Parse(strings.NewReader(filledExample()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.PostCall, defaultPostCall()) {
		t.Fatalf("example postcall section %+v differs from the defaults %+v", cfg.PostCall, defaultPostCall())
	}
}

func TestPostCallValidation(t *testing.T) {
	base := "matrix:\n  homeserver: https://hs.example\n  user_id: '@a:b'\n  access_token: t\n"
	for extra, want := range map[string]string{
		"postcall:\n  workers: 0\n":                           "postcall.workers",
		"postcall:\n  picture:\n    width: 100\n":             "picture.width",
		"postcall:\n  picture:\n    voice_activity: magic\n":  "voice_activity",
		"postcall:\n  export:\n    auto: [mp3]\n":             "export.auto",
		"postcall:\n  export:\n    mix_format: mp3\n":         "mix_format",
		"postcall:\n  transcript:\n    url: ftp://x\n":        "transcript.url",
		"postcall:\n  transcript:\n    command: ['']\n":       "transcript.command",
		"postcall:\n  transcript:\n    headers: {'a b': x}\n": "headers",
		"postcall:\n  transcript:\n    concurrency: 0\n":      "concurrency",
		"postcall:\n  export:\n    timeout: 1s\n":             "export.timeout",
		"postcall:\n  transcript:\n    comand: [x]\n":         "comand",
	} {
		_, err := Parse(strings.NewReader(base + extra))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want an error mentioning %q, got %v", extra, want, err)
		}
	}
	cfg, err := Parse(strings.NewReader(base + "postcall:\n  export:\n    auto: [mix, zip]\n  transcript:\n    command: [/bin/true, '{file}']\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.PostCall.Export.Auto) != 2 || cfg.PostCall.Transcript.Command[1] != "{file}" {
		t.Fatalf("parsed %+v", cfg.PostCall)
	}
}

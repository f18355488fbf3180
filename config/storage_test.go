package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"0": 0, "1024": 1024, "5MiB": 5 << 20, "2GB": 2e9, "1.5 GiB": 3 << 29, "10kb": 10000} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MB", "-1MB", "5 parsecs", "1e99GB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestStorageConfig(t *testing.T) {
	base := "matrix:\n  homeserver: https://hs.example\n  user_id: '@a:b'\n  access_token: t\n"
	secretFile := filepath.Join(t.TempDir(), "s3")
	if err := os.WriteFile(secretFile, []byte("s3-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(strings.NewReader(base + "recordings:\n  max_size: 2GB\n  expire_after: 720h\nstorage:\n  s3:\n    endpoint: s3.example:9000\n    bucket: rec\n    access_key: a\n    secret_key_file: " + secretFile + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Recordings.MaxSize != 2e9 || cfg.Recordings.ExpireAfter.D() != 720*time.Hour || cfg.EffectiveLinks() != LinksPresigned {
		t.Errorf("parsed: %+v links %s", cfg.Recordings, cfg.EffectiveLinks())
	}
	t.Setenv(EnvS3SecretKey, "from-env")
	t.Setenv(EnvWebhookToken, "0123456789abcdef")
	cfg, err = Parse(strings.NewReader(base + "storage:\n  s3:\n    endpoint: s3.example\n    bucket: rec\n    access_key: a\nhttp:\n  listen: 127.0.0.1:8080\n"))
	if err != nil || cfg.Storage.S3.SecretKey != "from-env" || cfg.HTTP.WebhookToken != "0123456789abcdef" {
		t.Errorf("env not applied: %v %+v", err, cfg.Storage.S3)
	}
	t.Setenv(EnvWebhookToken, "")
	cases := map[string]string{
		"storage:\n  s3:\n    endpoint: https://s3.example\n    bucket: b\n    access_key: a\n    secret_key: s\n": "without http",
		"storage:\n  s3:\n    endpoint: s3.example\n    access_key: a\n    secret_key: s\n":                        "bucket is required",
		"storage:\n  s3:\n    delete_local_after_upload: true\n":                                                   "needs storage.s3.endpoint",
		"storage:\n  links: presigned\n":                                                                           "presigned needs",
		"storage:\n  links: http\n":                                                                                "http needs",
		"storage:\n  links: email\n":                                                                               "storage.links",
		"storage:\n  s3:\n    presign_expiry: 200h\n":                                                              "presign_expiry",
		"storage:\n  s3:\n    part_size: 1MB\n":                                                                    "part_size",
		"recordings:\n  progress_interval: 5s\n":                                                                   "progress_interval",
		"recordings:\n  max_duration: 1s\n":                                                                        "max_duration",
		"recordings:\n  max_size: 10kB\n":                                                                          "max_size",
		"http:\n  listen: 8080\n":                                                                                  "http.listen",
		"http:\n  public_url: rec.example\n":                                                                       "public_url",
		"http:\n  webhook_token: short\n":                                                                          "webhook_token",
		"http:\n  pprof: true\n":                                                                                   "http.pprof needs http.listen on a loopback",
		"http:\n  listen: ':8080'\n  pprof: true\n":                                                                "http.pprof needs http.listen on a loopback",
		"http:\n  listen: 'localhost:8080'\n  pprof: true\n":                                                       "http.pprof needs http.listen on a loopback",
	}
	for extra, want := range cases {
		_, err := Parse(strings.NewReader(base + extra))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one mentioning %q", extra, err, want)
		}
	}
	for _, listen := range []string{"127.0.0.1:6060", "'[::1]:6060'"} {
		cfg, err := Parse(strings.NewReader(base + "http:\n  listen: " + listen + "\n  pprof: true\n"))
		if err != nil || !cfg.HTTP.Pprof {
			t.Errorf("pprof on %s: %v", listen, err)
		}
	}
	if Default().HTTP.Pprof {
		t.Error("http.pprof is on by default")
	}
}

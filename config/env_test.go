package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/crypto/utils"
)

func typeOfConfig() reflect.Type { return reflect.TypeOf(Config{}) }

func TestEnvSetsNestedKeys(t *testing.T) {
	l, e := read(t, "", "MATRIX_RECORDER_MATRIX_HOMESERVER=https://hs.mine.test", "MATRIX_RECORDER_MATRIX_USER_ID=@rec:mine.test",
		"MATRIX_RECORDER_MATRIX_PASSWORD=p: w #1", // taken as it is: no YAML quoting needed
		"MATRIX_RECORDER_RECORDINGS_MAX_DURATION=2h", "MATRIX_RECORDER_STORAGE_S3_PART_SIZE=10MiB", "MATRIX_RECORDER_WEBRTC_UDP_PORT=10000",
		"MATRIX_RECORDER_CALLS_AUTO_ANSWER=false", "MATRIX_RECORDER_POSTCALL_PICTURE_WIDTH=720", "MATRIX_RECORDER_RECORDINGS_DIR_MODE=0750",
		"MATRIX_RECORDER_DATA_DIR=/var/lib/rec", "MATRIX_RECORDER_LOG_LEVEL=debug",
		"MATRIX_RECORDER_STORAGE__S3__PATH_STYLE=true",                     // "__" between levels works too
		"MATRIX_RECORDER_CI=1", "MATRIX_RECORDER_INTEGRATION=1", "OTHER=x", // not the config's
		"MATRIX_RECORDER_CALLS_MAX_TRACKS=", // empty: unset
	)
	if e != nil {
		t.Fatal(e)
	}
	c := l.Config
	if c.Matrix.Homeserver != "https://hs.mine.test" || c.Matrix.UserID != "@rec:mine.test" || c.Matrix.Password != "p: w #1" ||
		c.Recordings.MaxDuration.D() != 2*time.Hour || c.Storage.S3.PartSize != 10<<20 || c.WebRTC.UDPPort != 10000 ||
		c.Calls.AutoAnswer || c.PostCall.Picture.Width != 720 || c.Recordings.DirMode != 0o750 || c.DataDir != "/var/lib/rec" ||
		c.Log.Level != "debug" || !c.Storage.S3.PathStyle || c.Calls.MaxTracks != Default().Calls.MaxTracks {
		t.Errorf("environment not applied: %+v", c)
	}
}

// The environment wins over the file, -set over both.
func TestPrecedence(t *testing.T) {
	in := account + "log:\n  level: warn\ncalls:\n  max_calls: 3\n  max_tracks: 5\n"
	l, err := Read([]byte(in), "c", Options{Environ: []string{"MATRIX_RECORDER_CALLS_MAX_CALLS=4", "MATRIX_RECORDER_LOG_LEVEL=error"}, Set: []string{"log.level=debug"}})
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Calls.MaxTracks != 5 || l.Config.Calls.MaxCalls != 4 || l.Config.Log.Level != "debug" {
		t.Errorf("got %+v %+v", l.Config.Calls, l.Config.Log)
	}
	_, err = Read([]byte(account), "c", Options{Set: []string{"matrix.password=x", "nope=1", "log.level"}})
	for _, want := range []string{"matrix.password: holds a secret", "-set: nope is not a config key", `-set "log.level": write it as key=value`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

func TestEnvLists(t *testing.T) {
	l, e := read(t, account,
		"MATRIX_RECORDER_BOT_ALLOWED_INVITERS=@a:b.test, :c.test",    // comma-separated text
		`MATRIX_RECORDER_BOT_RECORD_USERS=["@x:y.test","@z:y.test"]`, // JSON
		`MATRIX_RECORDER_WEBRTC_PUBLIC_IPS=[192.0.2.1, "2001:db8::1"]`,
		`MATRIX_RECORDER_WEBRTC_ICE_SERVERS=[{"urls": ["turn:turn.mine.test:3478"], "username": "u", "credential": "c"}]`,
		`MATRIX_RECORDER_POSTCALL_TRANSCRIPT_HEADERS={Authorization: "Bearer x"}`,
		`MATRIX_RECORDER_POSTCALL_EXPORT_AUTO=mix,zip`,
	)
	if e != nil {
		t.Fatal(e)
	}
	c := l.Config
	if !reflect.DeepEqual(c.Bot.AllowedInviters, []string{"@a:b.test", ":c.test"}) || !reflect.DeepEqual(c.Bot.RecordUsers, []string{"@x:y.test", "@z:y.test"}) ||
		!reflect.DeepEqual(c.WebRTC.PublicIPs, []string{"192.0.2.1", "2001:db8::1"}) || len(c.WebRTC.ICEServers) != 1 || c.WebRTC.ICEServers[0].Credential != "c" ||
		c.PostCall.Transcript.Headers["Authorization"] != "Bearer x" || !reflect.DeepEqual(c.PostCall.Export.Auto, []string{"mix", "zip"}) {
		t.Errorf("lists: %+v %+v %+v %+v", c.Bot, c.WebRTC, c.PostCall.Transcript.Headers, c.PostCall.Export)
	}
	_, e = read(t, account, `MATRIX_RECORDER_WEBRTC_ICE_SERVERS=[{urls: `, `MATRIX_RECORDER_POSTCALL_TRANSCRIPT_HEADERS=[a]`,
		`MATRIX_RECORDER_WEBRTC_ICE_SERVERS__=x`)
	wantProblems(t, e, "webrtc.ice_servers: must be a list, not valid YAML or JSON", "(MATRIX_RECORDER_WEBRTC_ICE_SERVERS)",
		"postcall.transcript.headers: must be a mapping such as {Name: value}, not a list (MATRIX_RECORDER_POSTCALL_TRANSCRIPT_HEADERS)")
}

// Errors about values from the environment name the variable.
func TestEnvErrorsNameTheVariable(t *testing.T) {
	_, e := read(t, account, "MATRIX_RECORDER_CALLS_MAX_DURATION=90", "MATRIX_RECORDER_LOG_LEVEL=loud",
		"MATRIX_RECORDER_RECORDINGS_DIRR=/x", "MATRIX_RECORDER_MATRIX_HOMESERVER_FILE=/x")
	wantProblems(t, e,
		`calls.max_duration: missing unit in "90" (write it like 90s, 15m or 2h) (MATRIX_RECORDER_CALLS_MAX_DURATION)`,
		`log.level "loud" must be one of trace, debug, info, warn, error (MATRIX_RECORDER_LOG_LEVEL)`,
		`MATRIX_RECORDER_RECORDINGS_DIRR is not the name of a config key; did you mean MATRIX_RECORDER_RECORDINGS_DIR?`,
		`matrix.homeserver: only secrets can be read from a file (_FILE); set MATRIX_RECORDER_MATRIX_HOMESERVER itself (MATRIX_RECORDER_MATRIX_HOMESERVER_FILE)`,
	)
}

func TestEnvFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	l, e := read(t, "matrix:\n  homeserver: https://hs.example\n  user_id: '@a:b'\n",
		"MATRIX_RECORDER_MATRIX_PASSWORD_FILE="+write("pw", " pass word \n"), // one newline dropped, nothing else
		"MATRIX_RECORDER_STORAGE__S3__PREFIX=rec",                            // "__" between levels
		"MATRIX_RECORDER_ICE_SERVERS_FILE=x",                                 // no section's name: not the config's
		"MATRIX_RECORDER_HTTP_WEBHOOK_TOKEN_FILE="+write("tok", "0123456789abcdef\r\n"),
	)
	if e != nil {
		t.Fatal(e)
	}
	if l.Config.Matrix.Password != " pass word " || l.Config.HTTP.WebhookToken != "0123456789abcdef" || l.Config.Storage.S3.Prefix != "rec" {
		t.Errorf("_FILE values: %q %q", l.Config.Matrix.Password, l.Config.HTTP.WebhookToken)
	}
	// storage.s3.secret_key_file is a key of its own: its variable names the file, which
	// the recorder reads at each use.
	s3 := write("s3", "s3-secret\n")
	l, e = read(t, account+"storage:\n  s3:\n    endpoint: s3.mine.test\n    bucket: b\n    access_key: a\n", "MATRIX_RECORDER_STORAGE_S3_SECRET_KEY_FILE="+s3)
	if e != nil {
		t.Fatal(e)
	}
	if _, secret, err := l.Config.Storage.S3.Credentials(); err != nil || secret != "s3-secret" || l.Config.Storage.S3.SecretKeyFile != s3 {
		t.Errorf("secret_key_file: %q %v", secret, err)
	}
	_, e = read(t, account, "MATRIX_RECORDER_MATRIX_PICKLE_KEY_FILE="+filepath.Join(dir, "missing"), "MATRIX_RECORDER_MATRIX_RECOVERY_KEY_FILE="+write("empty", "\n"))
	wantProblems(t, e, "matrix.pickle_key: reading the file MATRIX_RECORDER_MATRIX_PICKLE_KEY_FILE names", "no such file",
		"matrix.recovery_key: the file "+filepath.Join(dir, "empty")+" is empty (MATRIX_RECORDER_MATRIX_RECOVERY_KEY_FILE)")
	// A variable and its _FILE with different values: which one was meant is not guessed.
	_, e = read(t, account, "MATRIX_RECORDER_MATRIX_PASSWORD=a", "MATRIX_RECORDER_MATRIX_PASSWORD_FILE="+write("b", "b"))
	wantProblems(t, e, "matrix.password: set by both MATRIX_RECORDER_MATRIX_PASSWORD and MATRIX_RECORDER_MATRIX_PASSWORD_FILE, to different values")
}

// The seven variables of earlier releases keep working, documented as aliases.
func TestLegacyEnvNames(t *testing.T) {
	environ := []string{EnvPassword + "=pw", EnvAccessToken + "=tok", EnvPickleKey + "=pk", EnvS3AccessKey + "=ak", EnvS3SecretKey + "=sk",
		EnvWebhookToken + "=0123456789abcdef", EnvRecoveryKey + "=" + testRecoveryKey}
	l, e := read(t, "matrix:\n  homeserver: https://hs.example\n  user_id: '@a:b'\n", environ...)
	if e != nil {
		t.Fatal(e)
	}
	m, s3 := l.Config.Matrix, l.Config.Storage.S3
	if m.Password != "pw" || m.AccessToken != "tok" || m.PickleKey != "pk" || m.RecoveryKey != testRecoveryKey || s3.AccessKey != "ak" || s3.SecretKey != "sk" ||
		l.Config.HTTP.WebhookToken != "0123456789abcdef" {
		t.Errorf("legacy names: %+v %+v", m, s3)
	}
	vars := EnvVars()
	for name, key := range LegacyEnv() {
		if got := vars[key]; len(got) < 2 || got[0] != EnvName(key) || !contains(got, name) {
			t.Errorf("%s: variables %v, want %s first and %s among them", key, got, EnvName(key), name)
		}
	}
	if len(LegacyEnv()) != 7 {
		t.Errorf("%d legacy names", len(LegacyEnv()))
	}
	// Old and new name with the same value are fine; with different values a problem.
	if _, e := read(t, account, EnvPassword+"=same", "MATRIX_RECORDER_MATRIX_PASSWORD=same"); e != nil {
		t.Errorf("same value twice: %v", e)
	}
	_, e = read(t, account, EnvPassword+"=a", "MATRIX_RECORDER_MATRIX_PASSWORD=b")
	wantProblems(t, e, "matrix.password: set by both MATRIX_RECORDER_MATRIX_PASSWORD and MATRIX_RECORDER_PASSWORD")
}

// testRecoveryKey is a well-formed recovery key (of no account).
var testRecoveryKey = utils.EncodeBase58RecoveryKey([]byte("0123456789abcdef0123456789abcdef"))

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Every key has a variable of its own, made from its path: no two keys of the config share
// one today, and each name leads back to its key.
func TestEveryKeyHasItsVariable(t *testing.T) {
	ks := keysOf(typeOfConfig())
	table := newEnvTable(ks, nil)
	vars := EnvVars()
	for _, k := range ks {
		if got := table.names[EnvName(k.Path)].key.Path; got != k.Path {
			t.Errorf("%s answers to %s, which sets %s", k.Path, EnvName(k.Path), got)
		}
		if vars[k.Path][0] != EnvName(k.Path) {
			t.Errorf("%s: variables %v", k.Path, vars[k.Path])
		}
		_, hasFileKey := table.names[EnvName(k.Path+"_file")]
		if k.Secret && !hasFileKey && !contains(vars[k.Path], EnvName(k.Path)+EnvFileSuffix) {
			t.Errorf("secret %s has no _FILE variable: %v", k.Path, vars[k.Path])
		}
	}
	// The exact name of storage.s3.access_key_file wins over access_key's _FILE; both say
	// where the access key is.
	if tg := table.names["MATRIX_RECORDER_STORAGE_S3_ACCESS_KEY_FILE"]; tg.key.Path != "storage.s3.access_key_file" || tg.file {
		t.Errorf("MATRIX_RECORDER_STORAGE_S3_ACCESS_KEY_FILE sets %+v", tg)
	}
	if len(Keys()) < 80 {
		t.Errorf("only %d keys found by reflection", len(Keys()))
	}
}

// Two keys whose paths give one name: the one with fewer levels (the key with "_" in its
// own name) gets it, whatever the order; the other answers to its "__" name.
func TestEnvAmbiguityResolvesDeterministically(t *testing.T) {
	type inner struct {
		C string `yaml:"c"`
	}
	type section struct {
		BC string `yaml:"b_c" secret:"true"`
		B  inner  `yaml:"b"`
	}
	type outer struct {
		A   section `yaml:"a"`
		ABC string  `yaml:"a_b_c"`
		AB  inner   `yaml:"a_b"`
	}
	for i := 0; i < 20; i++ { // map order varies from run to run
		table := newEnvTable(keysOf(reflect.TypeOf(outer{})), nil)
		for name, want := range map[string]string{
			"MATRIX_RECORDER_A_B_C":         "a_b_c", // one level
			"MATRIX_RECORDER_A__B_C":        "a.b_c",
			"MATRIX_RECORDER_A__B__C":       "a.b.c",
			"MATRIX_RECORDER_A_B__C":        "a_b.c",
			"MATRIX_RECORDER_A__B_C_FILE":   "a.b_c",
			"MATRIX_RECORDER_A_B_C_FILE":    "", // a_b_c is no secret; a.b_c does not own A_B_C
			"MATRIX_RECORDER_A__B__C__FILE": "",
		} {
			if got := table.names[name].key.Path; got != want {
				t.Fatalf("%s sets %q, want %q", name, got, want)
			}
		}
	}
}

func TestUnsetEnvironmentChangesNothing(t *testing.T) {
	l, e := read(t, account)
	if e != nil {
		t.Fatal(e)
	}
	want := Default()
	want.Matrix.Homeserver, want.Matrix.UserID, want.Matrix.AccessToken = "https://hs.example", "@a:b", "t"
	if !reflect.DeepEqual(l.Config, want) {
		t.Errorf("defaults changed:\n%+v\n%+v", l.Config, want)
	}
}

package e2ee

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/ssss"

	"github.com/matrix-recorder/matrix-recorder/config"
)

// fakeAccount is a homeserver account as the cross-signing set-up sees it. failAt makes
// one step fail after it reached the server (like a SIGTERM that cancels a request the
// server already handled), or before (failBefore).
type fakeAccount struct {
	t       *testing.T
	keyFile string

	steps      []string
	defaultKey *ssss.Key // secret storage's default key
	stored     *ssss.Key // the key the cross-signing keys are stored under
	published  bool      // the account has cross-signing keys
	publishKey *ssss.Key // stored under this key when published
	signed     bool

	failAt, failBefore string
}

func (f *fakeAccount) step(name string) (reached bool, err error) {
	f.steps = append(f.steps, name)
	if f.failBefore == name {
		return false, context.Canceled
	}
	if f.failAt == name {
		return true, context.Canceled
	}
	return true, nil
}

func (f *fakeAccount) State(context.Context) (crossSigningState, error) {
	return crossSigningState{hasKeys: f.published, signed: f.signed}, nil
}

func (f *fakeAccount) StoreSecretKey(_ context.Context, key *ssss.Key) error {
	reached, err := f.step("secret-key")
	if reached {
		f.defaultKey = key
	}
	return err
}

func (f *fakeAccount) StoreNewKeys(_ context.Context, key *ssss.Key) error {
	reached, err := f.step("store-keys")
	if reached {
		f.stored = key
	}
	return err
}

func (f *fakeAccount) Publish(_ context.Context, _ mautrix.UIACallback) error {
	// The heart of the matter: when keys go public, their recovery key is on disk.
	data, rerr := os.ReadFile(f.keyFile)
	if rerr != nil {
		f.t.Errorf("publishing while %s does not exist: %v", f.keyFile, rerr)
	} else if strings.TrimSpace(string(data)) != f.stored.RecoveryKey() {
		f.t.Errorf("publishing keys stored under another key than the one on disk")
	}
	if fi, err := os.Stat(f.keyFile); err == nil && fi.Mode().Perm() != 0o600 {
		f.t.Errorf("recovery key file mode %04o, want 0600", fi.Mode().Perm())
	}
	reached, err := f.step("publish")
	if reached {
		f.published, f.publishKey = true, f.stored
	}
	return err
}

func (f *fakeAccount) SignDevice(context.Context) error {
	reached, err := f.step("sign")
	if reached {
		f.signed = true
	}
	return err
}

func (f *fakeAccount) VerifyWithRecoveryKey(_ context.Context, key string) error {
	f.steps = append(f.steps, "verify")
	if f.publishKey == nil || f.defaultKey == nil || key != f.publishKey.RecoveryKey() || !bytes.Equal(f.defaultKey.Key, f.publishKey.Key) {
		return errors.New("wrong recovery key")
	}
	f.signed = true
	return nil
}

type csEnv struct {
	acc *fakeAccount
	log bytes.Buffer
	cs  crossSigning
}

func newCSEnv(t *testing.T) *csEnv {
	dir := t.TempDir()
	e := &csEnv{acc: &fakeAccount{t: t, keyFile: filepath.Join(dir, RecoveryKeyFile)}}
	e.cs = crossSigning{acc: e.acc, cfg: config.Matrix{CrossSigning: true, Password: "pw"}, keyFile: e.acc.keyFile, user: "@rec:example.org"}
	e.cs.log = zerolog.New(&e.log)
	return e
}

func (e *csEnv) run() { e.cs.run(context.Background()) }

func (e *csEnv) fileKey(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(e.acc.keyFile)
	if err != nil {
		t.Fatalf("no recovery key file: %v", err)
	}
	return strings.TrimSpace(string(data))
}

// A first start writes the recovery key before it publishes anything, signs the device,
// and logs where the key is, never the key.
func TestCrossSigningFirstStart(t *testing.T) {
	e := newCSEnv(t)
	e.run()
	if got := strings.Join(e.acc.steps, ","); got != "secret-key,store-keys,publish,sign" {
		t.Fatalf("steps %s", got)
	}
	if !e.acc.signed {
		t.Fatal("device not signed")
	}
	key := e.fileKey(t)
	if strings.Contains(e.log.String(), key) || strings.Contains(e.log.String(), strings.ReplaceAll(key, " ", "")) {
		t.Errorf("the recovery key is in the log:\n%s", e.log.String())
	}
	if !strings.Contains(e.log.String(), e.acc.keyFile) {
		t.Errorf("the log does not name the file:\n%s", e.log.String())
	}
	// The next start has nothing to do.
	e.acc.steps = nil
	e.run()
	if len(e.acc.steps) != 0 {
		t.Errorf("second start did %v", e.acc.steps)
	}
}

// Stopped while publishing (the server took the keys, the bot never heard back): the next
// start signs the device with the recovery key on disk instead of leaving keys nobody holds.
func TestCrossSigningInterruptedWhilePublishing(t *testing.T) {
	for _, step := range []string{"publish", "sign"} {
		t.Run(step, func(t *testing.T) {
			e := newCSEnv(t)
			if step == "publish" {
				e.acc.failAt = step // the server took the keys
			} else {
				e.acc.failBefore = step // stopped before signing
			}
			e.run()
			if !e.acc.published || e.acc.signed {
				t.Fatalf("setup: published %v signed %v", e.acc.published, e.acc.signed)
			}
			key := e.fileKey(t)
			e.acc.failAt, e.acc.failBefore, e.acc.steps = "", "", nil
			e.run()
			if got := strings.Join(e.acc.steps, ","); got != "verify" || !e.acc.signed {
				t.Fatalf("restart: steps %s, signed %v\n%s", got, e.acc.signed, e.log.String())
			}
			if e.fileKey(t) != key {
				t.Error("the recovery key file changed")
			}
		})
	}
}

// Stopped before the keys went public: the next start finishes the set-up with the same
// recovery key, so the file stays the account's key.
func TestCrossSigningInterruptedBeforePublishing(t *testing.T) {
	for _, step := range []string{"secret-key", "store-keys", "publish"} {
		t.Run(step, func(t *testing.T) {
			e := newCSEnv(t)
			e.acc.failBefore = step
			e.run()
			if e.acc.published {
				t.Fatal("published although the step failed")
			}
			key := e.fileKey(t)
			e.acc.failBefore, e.acc.steps = "", nil
			e.run()
			if !e.acc.published || !e.acc.signed || e.acc.publishKey.RecoveryKey() != key || e.fileKey(t) != key {
				t.Fatalf("restart: published %v signed %v, same key %v, steps %v", e.acc.published, e.acc.signed, e.acc.publishKey != nil && e.acc.publishKey.RecoveryKey() == key, e.acc.steps)
			}
		})
	}
}

// Keys exist that nobody here holds: nothing is published over them and the log says
// what the operator must do.
func TestCrossSigningKeysWithoutRecoveryKey(t *testing.T) {
	e := newCSEnv(t)
	e.acc.published = true
	e.run()
	if len(e.acc.steps) != 0 {
		t.Fatalf("steps %v", e.acc.steps)
	}
	for _, want := range []string{"matrix.recovery_key", e.acc.keyFile, "reset"} {
		if !strings.Contains(e.log.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, e.log.String())
		}
	}
}

// A recovery key file that cannot be written stops the set-up before anything is public.
func TestCrossSigningUnwritableKeyFile(t *testing.T) {
	e := newCSEnv(t)
	e.cs.keyFile = filepath.Join(t.TempDir(), "missing", RecoveryKeyFile)
	e.acc.keyFile = e.cs.keyFile
	e.run()
	if len(e.acc.steps) != 0 || e.acc.published {
		t.Fatalf("went on without the key on disk: %v", e.acc.steps)
	}
}

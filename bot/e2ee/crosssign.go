package e2ee

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/ssss"
	"maunium.net/go/mautrix/crypto/utils"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/storage/datadir"
)

// RecoveryKeyFile is where a recovery key created on first start is written (data_dir).
const RecoveryKeyFile = "recovery-key.txt"

// crossSigningAccount is what the set-up does with the account and the crypto machine, one
// step per method so that the order is explicit (and testable with a fake).
type crossSigningAccount interface {
	// State asks the homeserver for the account's cross-signing keys and this device's
	// signatures.
	State(ctx context.Context) (crossSigningState, error)
	// StoreSecretKey uploads a secret storage key's description and makes it the default.
	StoreSecretKey(ctx context.Context, key *ssss.Key) error
	// StoreNewKeys creates cross-signing keys and stores them, encrypted with key, in
	// secret storage. Nothing is published yet.
	StoreNewKeys(ctx context.Context, key *ssss.Key) error
	// Publish uploads the public keys StoreNewKeys made: from then on the account has
	// cross-signing keys.
	Publish(ctx context.Context, uia mautrix.UIACallback) error
	// SignDevice signs this device with the self-signing key and the master key with
	// this device.
	SignDevice(ctx context.Context) error
	// VerifyWithRecoveryKey fetches the keys from secret storage with a recovery key and
	// signs this device.
	VerifyWithRecoveryKey(ctx context.Context, recoveryKey string) error
}

type crossSigningState struct {
	hasKeys bool // the account has a master and a self-signing key
	signed  bool // this device carries a signature of the self-signing key
}

// SetupCrossSigning makes sure the bot's device is signed by its account's self-signing
// key. Element Call (through matrix-js-sdk with "exclude insecure devices") may send call
// media keys only to cross-signed devices; an unsigned bot then records encrypted calls as
// undecryptable frames. It never stops the bot: a problem is logged with what to do.
func SetupCrossSigning(ctx context.Context, client *mautrix.Client, mach *crypto.OlmMachine, cfg config.Matrix, dataDir string, log zerolog.Logger) {
	log = log.With().Str("component", "cross-signing").Logger()
	cs := crossSigning{
		acc: &machineAccount{client: client, mach: mach, log: log}, cfg: cfg, log: log,
		keyFile: filepath.Join(dataDir, RecoveryKeyFile), user: client.UserID,
	}
	cs.run(ctx)
}

// crossSigning is the set-up: with matrix.recovery_key the keys are restored from secret
// storage; without one, an account that has no cross-signing yet gets it
// (matrix.cross_signing). The recovery key of a new set-up is written (fsynced, 0600) to
// keyFile before anything is published, so an interruption at any point leaves either an
// account without keys or keys whose recovery key is on disk, and the next start finishes
// the set-up from there.
type crossSigning struct {
	acc     crossSigningAccount
	cfg     config.Matrix
	log     zerolog.Logger
	keyFile string
	user    id.UserID
}

func (c crossSigning) run(ctx context.Context) {
	if !c.cfg.CrossSigning && c.cfg.RecoveryKey == "" {
		return
	}
	state, err := c.acc.State(ctx)
	if err != nil {
		c.log.Warn().Err(err).Msg("Could not read the account's cross-signing keys")
		return
	}
	fileKey, err := c.readKeyFile()
	if err != nil {
		c.log.Error().Err(err).Str("file", c.keyFile).Msg("Could not read the recovery key file")
	}
	switch {
	case state.signed:
		c.log.Info().Msg("This device is cross-signed")
		if fileKey != "" && c.cfg.RecoveryKey == "" {
			c.log.Info().Str("file", c.keyFile).Msg("The account's recovery key is in this file: keep it safe (or put it in matrix.recovery_key); a new install needs it to be trusted")
		}
	case state.hasKeys && c.cfg.RecoveryKey != "":
		if err := c.acc.VerifyWithRecoveryKey(ctx, strings.TrimSpace(c.cfg.RecoveryKey)); err != nil {
			c.log.Error().Err(err).Msg("Could not sign this device with matrix.recovery_key (is it this account's current recovery key?)")
			return
		}
		c.log.Info().Msg("Signed this device with the cross-signing keys from secret storage")
	case state.hasKeys && fileKey != "":
		// An earlier start published the keys but was stopped before it signed the
		// device, or this is a restart with a new device: the key on disk finishes it.
		if err := c.acc.VerifyWithRecoveryKey(ctx, fileKey); err != nil {
			c.log.Error().Err(err).Str("file", c.keyFile).Msg("The account has cross-signing keys that the recovery key in this file does not open " +
				"(someone else set up cross-signing for the account since). Put the account's current recovery key in matrix.recovery_key, " +
				"or reset the account's cryptographic identity from another session; then delete the file and restart")
			return
		}
		c.log.Info().Str("file", c.keyFile).Msg("Signed this device with the recovery key in data_dir (finishing an earlier set-up)")
	case state.hasKeys:
		c.log.Error().Str("file", c.keyFile).Msg("The account has cross-signing keys but this device is not signed and no recovery key is known " +
			"(matrix.recovery_key is empty and the file does not exist), so clients that share call keys only with verified devices will not send them to the recorder. " +
			"Do one of: set matrix.recovery_key (or MATRIX_RECORDER_RECOVERY_KEY) to the account's recovery key; verify this device from another session of the account; " +
			"or, if nobody has the recovery key, log in as the bot in Element, reset its cryptographic identity (Settings, Encryption) and put the new recovery key in matrix.recovery_key. Then restart")
	case c.cfg.RecoveryKey != "":
		c.log.Warn().Msg("matrix.recovery_key is set but the account has no cross-signing keys; not creating new ones over a configured key")
	default:
		c.bootstrap(ctx, fileKey)
	}
}

// readKeyFile returns the recovery key in keyFile ("" if there is none).
func (c crossSigning) readKeyFile() (string, error) {
	data, err := os.ReadFile(c.keyFile)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// bootstrap creates the account's cross-signing keys, stored in secret storage under a
// recovery key that is on disk before anything is published; with existing (the key a
// start that was stopped before publishing wrote) that key is used again, so the file
// stays valid.
func (c crossSigning) bootstrap(ctx context.Context, existing string) {
	var key *ssss.Key
	var err error
	if existing != "" {
		raw := utils.DecodeBase58RecoveryKey(existing)
		if raw == nil {
			c.log.Error().Str("file", c.keyFile).Msg("The file does not hold a recovery key; move it away and restart to set up cross-signing anew")
			return
		}
		if key, err = ssss.WrapKey(raw, nil); err != nil {
			c.log.Error().Err(err).Msg("Could not use the recovery key in data_dir")
			return
		}
		c.log.Info().Str("file", c.keyFile).Msg("Finishing the cross-signing set-up an earlier start began, with its recovery key")
	} else {
		if key, err = ssss.NewKey(""); err != nil {
			c.log.Error().Err(err).Msg("Could not create a recovery key")
			return
		}
		if err := datadir.WriteSecret(c.keyFile, []byte(key.RecoveryKey()+"\n")); err != nil {
			c.log.Error().Err(err).Str("file", c.keyFile).Msg("Could not write the recovery key; not setting up cross-signing (nothing was published)")
			return
		}
	}
	var uia mautrix.UIACallback
	if pw := c.cfg.Password; pw != "" {
		uia = func(r *mautrix.RespUserInteractive) any {
			return &mautrix.ReqUIAuthLogin{
				BaseAuthData: mautrix.BaseAuthData{Type: mautrix.AuthTypePassword, Session: r.Session},
				User:         c.user.String(),
				Password:     pw,
			}
		}
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"store the secret storage key", func() error { return c.acc.StoreSecretKey(ctx, key) }},
		{"create the cross-signing keys in secret storage", func() error { return c.acc.StoreNewKeys(ctx, key) }},
		{"publish the cross-signing keys", func() error { return c.acc.Publish(ctx, uia) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			hint := ""
			if uia == nil && s.what == "publish the cross-signing keys" {
				hint = " (the homeserver may want the account password for this; the bot logged in with an access token)"
			}
			c.log.Error().Err(err).Str("file", c.keyFile).Msg("Could not " + s.what + hint +
				"; the next start continues with the recovery key in the file. Encrypted Element Call calls may not share keys with the recorder until then")
			return
		}
	}
	if err := c.acc.SignDevice(ctx); err != nil {
		c.log.Error().Err(err).Str("file", c.keyFile).Msg("Created cross-signing keys but could not sign this device; the next start signs it with the recovery key in the file")
		return
	}
	c.log.Warn().Str("file", c.keyFile).Msg("Set up cross-signing for the bot's account and signed this device. The account's recovery key is in this file (mode 0600): " +
		"keep it safe, or move it to matrix.recovery_key (a new install of the bot needs it to be trusted)")
}

// machineAccount is crossSigningAccount on the bot's client and crypto machine.
type machineAccount struct {
	client  *mautrix.Client
	mach    *crypto.OlmMachine
	log     zerolog.Logger
	pending *crypto.CrossSigningKeysCache // made by StoreNewKeys, published by Publish
}

func (a *machineAccount) State(ctx context.Context) (crossSigningState, error) {
	return ownCrossSigning(ctx, a.client)
}

func (a *machineAccount) StoreSecretKey(ctx context.Context, key *ssss.Key) error {
	s := a.mach.SSSS
	if err := s.SetKeyData(ctx, key.ID, key.Metadata); err != nil {
		return fmt.Errorf("upload the key description: %w", err)
	}
	if err := s.SetDefaultKeyID(ctx, key.ID); err != nil {
		return fmt.Errorf("make it the default key: %w", err)
	}
	return nil
}

func (a *machineAccount) StoreNewKeys(ctx context.Context, key *ssss.Key) error {
	mach := a.mach
	keys, err := mach.GenerateCrossSigningKeys()
	if err != nil {
		return err
	}
	if err := mach.UploadCrossSigningKeysToSSSS(ctx, key, keys); err != nil {
		return err
	}
	a.pending = keys
	return nil
}

func (a *machineAccount) Publish(ctx context.Context, uia mautrix.UIACallback) error {
	if a.pending == nil {
		return errors.New("no keys were created")
	}
	return a.mach.PublishCrossSigningKeys(ctx, a.pending, uia)
}

func (a *machineAccount) SignDevice(ctx context.Context) error {
	mach := a.mach
	if err := mach.SignOwnDevice(ctx, mach.OwnIdentity()); err != nil {
		return err
	}
	if err := mach.SignOwnMasterKey(ctx); err != nil {
		a.log.Warn().Err(err).Msg("Could not sign the master key with this device")
	}
	return nil
}

func (a *machineAccount) VerifyWithRecoveryKey(ctx context.Context, recoveryKey string) error {
	return a.mach.VerifyWithRecoveryKey(ctx, recoveryKey)
}

// ownCrossSigning asks the homeserver (not the local store, which may be stale) for the
// account's cross-signing keys and this device's signatures.
func ownCrossSigning(ctx context.Context, client *mautrix.Client) (crossSigningState, error) {
	user, device := client.UserID, client.DeviceID
	resp, err := client.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{user: mautrix.DeviceIDList{device}}})
	if err != nil {
		return crossSigningState{}, fmt.Errorf("query own keys: %w", err)
	}
	master, hasMaster := resp.MasterKeys[user]
	ssk, hasSSK := resp.SelfSigningKeys[user]
	if !hasMaster || !hasSSK || len(master.Keys) == 0 || len(ssk.Keys) == 0 {
		return crossSigningState{}, nil
	}
	st := crossSigningState{hasKeys: true}
	dk, ok := resp.DeviceKeys[user][device]
	if !ok {
		return st, errors.New("the homeserver does not list this device's keys")
	}
	for _, pub := range ssk.Keys {
		keyID := id.NewKeyID(id.KeyAlgorithmEd25519, pub.String())
		if _, ok := dk.Signatures[user][keyID]; ok {
			st.signed = true
		}
	}
	return st, nil
}

package bot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// recoveryKeyFile is where a recovery key created on first start is written (data_dir).
const recoveryKeyFile = "recovery-key.txt"

// setupCrossSigning makes sure the bot's device is signed by its account's self-signing
// key. Element Call (through matrix-js-sdk with "exclude insecure devices") may send call
// media keys only to cross-signed devices; an unsigned bot then records encrypted calls as
// undecryptable frames. With matrix.recovery_key the keys are restored from secret storage;
// without one, an account that has no cross-signing yet gets it (matrix.cross_signing). It
// never stops the bot: a problem is logged with what to do about it.
func (b *Bot) setupCrossSigning(ctx context.Context) {
	cfg := b.cfg.Matrix
	log := b.log.With().Str("component", "cross-signing").Logger()
	if !cfg.CrossSigning && cfg.RecoveryKey == "" {
		return
	}
	state, err := b.ownCrossSigning(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("Could not read the account's cross-signing keys")
		return
	}
	switch {
	case state.signed:
		log.Info().Msg("This device is cross-signed")
	case state.hasKeys && cfg.RecoveryKey != "":
		if err := b.crypto.Machine().VerifyWithRecoveryKey(ctx, strings.TrimSpace(cfg.RecoveryKey)); err != nil {
			log.Error().Err(err).Msg("Could not sign this device with matrix.recovery_key (is it this account's current recovery key?)")
			return
		}
		log.Info().Msg("Signed this device with the cross-signing keys from secret storage")
	case state.hasKeys:
		log.Warn().Msg("The account has cross-signing keys but this device is not signed, so clients that share call keys " +
			"only with verified devices will not send them to the recorder. Set matrix.recovery_key, or verify the device from another session.")
	case cfg.RecoveryKey != "":
		log.Warn().Msg("matrix.recovery_key is set but the account has no cross-signing keys; not creating new ones over a configured key")
	default:
		b.bootstrapCrossSigning(ctx)
	}
}

type crossSigningState struct {
	hasKeys bool // the account has a master and a self-signing key
	signed  bool // this device carries a signature of the self-signing key
}

// ownCrossSigning asks the homeserver (not the local store, which may be stale) for the
// account's cross-signing keys and this device's signatures.
func (b *Bot) ownCrossSigning(ctx context.Context) (crossSigningState, error) {
	user, device := b.client.UserID, b.client.DeviceID
	resp, err := b.client.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{user: mautrix.DeviceIDList{device}}})
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

// bootstrapCrossSigning creates the account's cross-signing keys (stored in secret storage
// under a new recovery key), signs the device and the master key, and hands the recovery key
// to the operator once: in the log and in data_dir/recovery-key.txt.
func (b *Bot) bootstrapCrossSigning(ctx context.Context) {
	log := b.log.With().Str("component", "cross-signing").Logger()
	mach := b.crypto.Machine()
	var uia mautrix.UIACallback
	if pw := b.cfg.Matrix.Password; pw != "" {
		uia = func(r *mautrix.RespUserInteractive) any {
			return &mautrix.ReqUIAuthLogin{
				BaseAuthData: mautrix.BaseAuthData{Type: mautrix.AuthTypePassword, Session: r.Session},
				User:         b.client.UserID.String(),
				Password:     pw,
			}
		}
	}
	recoveryKey, _, err := mach.GenerateAndUploadCrossSigningKeys(ctx, uia, "")
	if err != nil {
		hint := ""
		if uia == nil {
			hint = " (the homeserver may want the account password for this; the bot logged in with an access token)"
		}
		log.Error().Err(err).Msg("Could not set up cross-signing" + hint + "; encrypted Element Call calls may not share keys with the recorder")
		return
	}
	if err := mach.SignOwnDevice(ctx, mach.OwnIdentity()); err != nil {
		log.Error().Err(err).Msg("Created cross-signing keys but could not sign this device")
	} else if err := mach.SignOwnMasterKey(ctx); err != nil {
		log.Warn().Err(err).Msg("Could not sign the master key with this device")
	}
	path := filepath.Join(b.cfg.DataDir, recoveryKeyFile)
	werr := os.WriteFile(path, []byte(recoveryKey+"\n"), 0o600)
	ev := log.Warn().Str("recovery_key", recoveryKey)
	if werr == nil {
		ev = ev.Str("written_to", path)
	} else {
		ev = ev.AnErr("write_error", werr)
	}
	ev.Msg("Set up cross-signing for the bot's account and signed this device. This recovery key is shown only now: " +
		"put it in matrix.recovery_key (so a new device can sign itself) or keep it somewhere safe, then delete the file")
}

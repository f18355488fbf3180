// Package e2ee is the bot's end-to-end encryption on top of mautrix's crypto helper: the
// to-device events it decrypts itself (call signalling and MatrixRTC media keys, which
// the crypto machine would drop), room members loaded before the first message in a room,
// the cross-signing set-up, and the pickle key.
package e2ee

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-recorder/matrix-recorder/storage/datadir"
)

// Files in data_dir: mautrix's crypto store, and the generated pickle key.
const (
	CryptoDBName  = "crypto.db"
	PickleKeyFile = "pickle.key"
)

// PickleKey returns the configured key (matrix.pickle_key), or the one generated on first
// start into data_dir.
func PickleKey(configured, dataDir string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	path := filepath.Join(dataDir, PickleKeyFile)
	data, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(data))) >= 32 {
		return []byte(strings.TrimSpace(string(data))), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read pickle key: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generate pickle key: %w", err)
	}
	key := hex.EncodeToString(raw)
	if err := datadir.WriteSecret(path, []byte(key+"\n")); err != nil {
		return nil, fmt.Errorf("write pickle key: %w", err)
	}
	return []byte(key), nil
}

// DecryptToDevice decrypts the sync's Olm-encrypted to-device events itself and returns
// those the crypto machine does not handle (call signalling of group calls, MatrixRTC media
// keys), which mautrix would otherwise log and drop. Room keys and the like are still
// handled by the machine inside HandleEncryptedEvent. The events are removed from the
// response, because an Olm message cannot be decrypted twice; device lists are handled
// first, as the machine does.
func DecryptToDevice(ctx context.Context, mach *crypto.OlmMachine, res *mautrix.RespSync, since string, log zerolog.Logger) []*event.Event {
	mach.HandleDeviceLists(ctx, &res.DeviceLists, since)
	res.DeviceLists = mautrix.DeviceLists{}
	kept := res.ToDevice.Events[:0]
	var out []*event.Event
	for _, evt := range res.ToDevice.Events {
		if evt.Type.Type != event.ToDeviceEncrypted.Type {
			if !isCallToDevice(evt.Type.Type) {
				kept = append(kept, evt) // the crypto machine's business
				continue
			}
			// Plain call signalling: the machine would only fail to parse it into
			// mautrix's VoIP structs and log a warning; dispatch it directly.
			evt.Type.Class = event.ToDeviceEventType
			_ = evt.Content.ParseRaw(evt.Type)
			evt.Mautrix.EventSource = event.SourceToDevice
			evt.Mautrix.ReceivedAt = time.Now()
			out = append(out, evt)
			continue
		}
		evt.Type.Class = event.ToDeviceEventType
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			log.Warn().Err(err).Stringer("sender", evt.Sender).Msg("Unparseable encrypted to-device event")
			continue
		}
		d := mach.HandleEncryptedEvent(ctx, evt)
		if d == nil {
			continue // handled by the machine (room key, dummy, ...) or undecryptable
		}
		typ := d.Type
		typ.Class = event.ToDeviceEventType
		dec := &event.Event{Sender: d.Sender, Type: typ, Content: d.Content}
		if len(dec.Content.VeryRaw) > 0 {
			_ = dec.Content.ParseRaw(typ) // unknown types stay raw
		}
		dec.Mautrix.EventSource = event.SourceToDevice | event.SourceDecrypted
		dec.Mautrix.WasEncrypted = true
		dec.Mautrix.TrustSource = d.SenderDevice
		dec.Mautrix.ReceivedAt = time.Now()
		out = append(out, dec)
	}
	res.ToDevice.Events = kept
	return out
}

// isCallToDevice reports whether a to-device event type is call signalling or MatrixRTC
// (group calls, media keys) rather than something for the crypto machine.
func isCallToDevice(t string) bool {
	return strings.HasPrefix(t, "m.call.") || strings.HasPrefix(t, "org.matrix.call.") ||
		strings.HasPrefix(t, "io.element.call.") || strings.HasPrefix(t, "org.matrix.msc4143.")
}

package lkpeer

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	lk "github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

// onEvent follows the memberships of the call the peer is in; a device that joins gets the
// current key.
func (p *Peer) onEvent(ctx context.Context, evt *event.Event) {
	if evt.Type == event.EventMessage {
		p.inbox.Note(evt, p.cli.UserID)
		return
	}
	if !matrixrtc.IsMemberEvent(evt.Type) {
		return
	}
	p.mu.Lock()
	room := p.room
	p.mu.Unlock()
	if room == "" || evt.RoomID != room {
		return
	}
	u, _ := matrixrtc.Parse(evt, call.RawContent(evt), time.Now())
	if u.Key == "" {
		return
	}
	p.mu.Lock()
	p.slots[u.Key] = u.Only(matrixrtc.MatrixRTC...).Members
	p.mu.Unlock()
	p.distributeKey(context.WithoutCancel(ctx), false)
}

// loadMembers reads the state memberships already in the room.
func (p *Peer) loadMembers(ctx context.Context, room id.RoomID) error {
	st, err := p.cli.State(ctx, room)
	if err != nil {
		return fmt.Errorf("read room state: %w", err)
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, evt := range st[matrixrtc.TypeCallMember] {
		evt.RoomID = room
		if u, _ := matrixrtc.Parse(evt, call.RawContent(evt), now); u.Key != "" {
			p.slots[u.Key] = u.Only(matrixrtc.MatrixRTC...).Members
		}
	}
	return nil
}

// otherDevices lists the member devices of the call other than the peer's own, each with
// the time its membership began (the newest when it has several).
func (p *Peer) otherDevicesLocked(now time.Time) map[matrixrtc.DeviceKey]int64 {
	self := matrixrtc.DeviceKey{User: p.cli.UserID, Device: p.cli.DeviceID}
	out := map[matrixrtc.DeviceKey]int64{}
	for _, ms := range p.slots {
		for _, m := range ms {
			k := m.Key()
			if k == self || !m.ExpiresAt.After(now) {
				continue
			}
			if ts, ok := out[k]; !ok || m.CreatedTs > ts {
				out[k] = m.CreatedTs
			}
		}
	}
	return out
}

// keyedAt is what a device was sent: the key index, for its membership that began at
// created (ms).
type keyedAt struct {
	index   uint8
	created int64
}

// distributeKey sends the current key to member devices that do not have it yet (all of
// them after a rotation). As js-sdk's RTCEncryptionManager does, a device whose membership
// changed its created_ts (it left and joined again, or restarted) counts as one that does
// not have the key: it may have lost it.
func (p *Peer) distributeKey(ctx context.Context, rotated bool) {
	p.mu.Lock()
	if !p.opts.Encrypt || p.key == nil || p.lkRoom == nil && p.external == nil && !rotated {
		p.mu.Unlock()
		return
	}
	idx, key := p.keyIndex, p.key
	var targets []matrixrtc.DeviceKey
	var first []bool
	for d, created := range p.otherDevicesLocked(time.Now()) {
		got, had := p.keyed[d]
		if had && got.index == idx && got.created == created {
			continue
		}
		p.keyed[d] = keyedAt{index: idx, created: created}
		targets = append(targets, d)
		first = append(first, !had || got.created != created)
	}
	p.mu.Unlock()
	if len(targets) == 0 {
		return
	}
	if p.opts.KeyTransport == KeysRoom {
		p.sendLater(ctx, p.opts.KeyDelay, func(ctx context.Context) error { return p.sendRoomKey(ctx, idx, key) }, targets)
		return
	}
	for i, d := range targets {
		delay := time.Duration(0)
		if first[i] {
			delay = p.opts.KeyDelay
		}
		d := d
		p.sendLater(ctx, delay, func(ctx context.Context) error { return p.sendDeviceKey(ctx, d, idx, key) }, []matrixrtc.DeviceKey{d})
	}
}

// sendLater runs send after delay (in the background when there is one); on failure the
// devices count as not having the key, so the next membership change retries.
func (p *Peer) sendLater(ctx context.Context, delay time.Duration, send func(context.Context) error, devs []matrixrtc.DeviceKey) {
	run := func() {
		if delay > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
		}
		if err := send(ctx); err != nil {
			p.log.Warn().Err(err).Msg("Could not send the media key")
			p.mu.Lock()
			for _, d := range devs {
				delete(p.keyed, d)
			}
			p.mu.Unlock()
		}
	}
	if delay <= 0 {
		run()
		return
	}
	p.keyWG.Add(1)
	go func() {
		defer p.keyWG.Done()
		run()
	}()
}

// sendDeviceKey sends io.element.call.encryption_keys to one device, Olm-encrypted, as
// js-sdk's ToDeviceKeyTransport does.
func (p *Peer) sendDeviceKey(ctx context.Context, d matrixrtc.DeviceKey, idx uint8, key []byte) error {
	mach := p.crypto.Machine()
	if p.opts.OnlyCrossSigned {
		if _, err := mach.FetchKeys(ctx, []id.UserID{d.User}, true); err != nil {
			return fmt.Errorf("fetch keys of %s: %w", d.User, err)
		}
		dev, err := mach.GetOrFetchDevice(ctx, d.User, d.Device)
		if err != nil {
			return fmt.Errorf("device %s: %w", d, err)
		}
		if trust, _ := mach.ResolveTrustContext(ctx, dev); trust < id.TrustStateCrossSignedUntrusted {
			return fmt.Errorf("device %s is not cross-signed by its owner (trust %s); not sending it the key", d, trust)
		}
	}
	p.mu.Lock()
	room, memberID := p.room, p.memberID
	p.mu.Unlock()
	content := map[string]any{
		"keys":    map[string]any{"index": idx, "key": base64.StdEncoding.EncodeToString(key)},
		"room_id": room,
		"member":  map[string]string{"claimed_device_id": string(p.cli.DeviceID), "id": memberID},
		"session": map[string]string{"call_id": "", "application": "m.call", "scope": "m.room"},
		"sent_ts": time.Now().UnixMilli(),
	}
	req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{d.User: {d.Device: {Parsed: content}}}}
	typ := lk.TypeEncryptionKeys
	typ.Class = event.ToDeviceEventType
	enc, err := mach.EncryptToDevices(ctx, typ, req)
	if err != nil {
		return fmt.Errorf("olm-encrypt the key for %s: %w", d, err)
	}
	if enc.Messages[d.User][d.Device] == nil {
		return fmt.Errorf("no olm session with %s", d)
	}
	if _, err := p.cli.SendToDevice(ctx, event.ToDeviceEncrypted, enc); err != nil {
		return fmt.Errorf("send the key to %s: %w", d, err)
	}
	p.log.Info().Stringer("to", d).Uint8("key_index", idx).Msg("Sent media key")
	return nil
}

// sendRoomKey sends the older room-event form (encrypted like any event in an encrypted
// room).
func (p *Peer) sendRoomKey(ctx context.Context, idx uint8, key []byte) error {
	p.mu.Lock()
	room := p.room
	p.mu.Unlock()
	content := map[string]any{
		"keys":      []any{map[string]any{"index": idx, "key": base64.StdEncoding.EncodeToString(key)}},
		"device_id": p.cli.DeviceID,
		"call_id":   "",
		"sent_ts":   time.Now().UnixMilli(),
	}
	if _, err := p.cli.SendMessageEvent(ctx, room, lk.TypeEncryptionKeys, content); err != nil {
		return fmt.Errorf("send media key room event: %w", err)
	}
	p.log.Info().Uint8("key_index", idx).Msg("Sent media key as a room event")
	return nil
}

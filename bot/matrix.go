package bot

import (
	"context"
	"errors"
	"fmt"

	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
)

// botMatrix gives call backends what they may do on Matrix.
type botMatrix struct{ b *Bot }

var _ call.Matrix = botMatrix{}

func (m botMatrix) UserID() id.UserID     { return m.b.client.UserID }
func (m botMatrix) DeviceID() id.DeviceID { return m.b.client.DeviceID }

func (m botMatrix) SendMessage(ctx context.Context, roomID id.RoomID, t event.Type, content any) (id.EventID, error) {
	resp, err := m.b.client.SendMessageEvent(ctx, roomID, t, content)
	if err != nil {
		return "", fmt.Errorf("send %s: %w", t.Type, err)
	}
	return resp.EventID, nil
}

func (m botMatrix) SendState(ctx context.Context, roomID id.RoomID, t event.Type, stateKey string, content any) error {
	if _, err := m.b.client.SendStateEvent(ctx, roomID, t, stateKey, content); err != nil {
		return fmt.Errorf("set %s state: %w", t.Type, err)
	}
	return nil
}

func (m botMatrix) SendToDevice(ctx context.Context, t event.Type, messages map[id.UserID]map[id.DeviceID]any, encrypt bool) error {
	req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{}}
	for u, devs := range messages {
		req.Messages[u] = map[id.DeviceID]*event.Content{}
		for d, c := range devs {
			req.Messages[u][d] = &event.Content{Parsed: c}
		}
	}
	sendType := t
	sendType.Class = event.ToDeviceEventType
	if encrypt {
		enc, err := m.b.crypto.Machine().EncryptToDevices(ctx, sendType, req)
		if err != nil {
			return fmt.Errorf("olm-encrypt %s: %w", t.Type, err)
		}
		var missing []string
		for u, devs := range req.Messages {
			for d := range devs {
				if enc.Messages[u] == nil || enc.Messages[u][d] == nil {
					missing = append(missing, string(u)+"/"+string(d))
				}
			}
		}
		req = enc
		sendType = event.ToDeviceEncrypted
		if len(missing) > 0 {
			defer func() {
				m.b.log.Warn().Strs("devices", missing).Str("type", t.Type).Msg("No Olm session for some devices; not sent to them")
			}()
		}
	}
	if _, err := m.b.client.SendToDevice(ctx, sendType, req); err != nil {
		return fmt.Errorf("send %s to devices: %w", t.Type, err)
	}
	return nil
}

func (m botMatrix) State(ctx context.Context, roomID id.RoomID) (mautrix.RoomStateMap, error) {
	st, err := m.b.client.State(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("read room state: %w", err)
	}
	return st, nil
}

func (m botMatrix) JoinedMembers(ctx context.Context, roomID id.RoomID) (map[id.UserID]string, error) {
	resp, err := m.b.client.JoinedMembers(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("read joined members: %w", err)
	}
	out := make(map[id.UserID]string, len(resp.Joined))
	for u, info := range resp.Joined {
		out[u] = info.DisplayName
	}
	return out, nil
}

func (m botMatrix) IsEncrypted(ctx context.Context, roomID id.RoomID) bool {
	enc, err := m.b.client.StateStore.IsEncrypted(ctx, roomID)
	return err == nil && enc
}

func (m botMatrix) ICEServers(ctx context.Context) []webrtc.ICEServer { return m.b.iceServers(ctx) }

func (m botMatrix) OpenIDToken(ctx context.Context) (*mautrix.RespOpenIDToken, error) {
	t, err := m.b.client.RequestOpenIDToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("request openid token: %w", err)
	}
	if t.AccessToken == "" {
		return nil, errors.New("homeserver returned an empty openid token")
	}
	return t, nil
}

func (m botMatrix) Notice(ctx context.Context, roomID id.RoomID, text string, mentions ...id.UserID) id.EventID {
	return m.b.noticeMentions(ctx, roomID, text, "", mentions)
}

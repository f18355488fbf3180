package livekit

import (
	"context"
	"sync"
	"testing"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// fakeMatrix counts the OpenID tokens the backend asks for and keeps its notices.
type fakeMatrix struct {
	mu      sync.Mutex
	openIDs int
	notices []string
}

func (f *fakeMatrix) UserID() id.UserID     { return "@bot:hs" }
func (f *fakeMatrix) DeviceID() id.DeviceID { return "BOTDEV" }
func (f *fakeMatrix) SendMessage(context.Context, id.RoomID, event.Type, any) (id.EventID, error) {
	return "$m", nil
}
func (f *fakeMatrix) SendState(context.Context, id.RoomID, event.Type, string, any) error {
	return nil
}
func (f *fakeMatrix) SendToDevice(context.Context, event.Type, map[id.UserID]map[id.DeviceID]any, bool) error {
	return nil
}
func (f *fakeMatrix) State(context.Context, id.RoomID) (mautrix.RoomStateMap, error) {
	return mautrix.RoomStateMap{}, nil
}
func (f *fakeMatrix) JoinedMembers(context.Context, id.RoomID) (map[id.UserID]string, error) {
	return nil, nil
}
func (f *fakeMatrix) IsEncrypted(context.Context, id.RoomID) bool   { return true }
func (f *fakeMatrix) ICEServers(context.Context) []webrtc.ICEServer { return nil }
func (f *fakeMatrix) OpenIDToken(context.Context) (*mautrix.RespOpenIDToken, error) {
	f.mu.Lock()
	f.openIDs++
	f.mu.Unlock()
	return openIDForTest(), nil
}
func (f *fakeMatrix) Notice(_ context.Context, _ id.RoomID, text string, _ ...id.UserID) id.EventID {
	f.mu.Lock()
	f.notices = append(f.notices, text)
	f.mu.Unlock()
	return ""
}

func (f *fakeMatrix) openIDRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.openIDs
}

func openIDForTest() *mautrix.RespOpenIDToken {
	return &mautrix.RespOpenIDToken{AccessToken: "t", TokenType: "Bearer", MatrixServerName: "hs", ExpiresIn: 3600}
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
}

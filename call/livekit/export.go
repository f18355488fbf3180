package livekit

import (
	"context"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

// CallFoci reads the room's call state and returns the LiveKit foci its members publish on
// (in js-sdk's order, at most maxFociChecked) and the members other than the bot. The
// Egress backend uses it to find an Element Call call's SFU and room; FocusAccess refuses
// the foci the bot does not trust, saying why.
func (b *Backend) CallFoci(ctx context.Context, room id.RoomID) ([]matrixrtc.Transport, []matrixrtc.Member, error) {
	if _, err := b.loadState(ctx, room); err != nil {
		return nil, nil, err
	}
	members := b.members(room, time.Now())
	foci := matrixrtc.PublishTransports(members)
	if len(foci) > maxFociChecked {
		foci = foci[:maxFociChecked]
	}
	return foci, members, nil
}

// FocusAccess asks a focus' JWT service for the bot's access to the room's call: the SFU's
// address and the LiveKit room name. Only a focus the bot trusts is asked.
func (b *Backend) FocusAccess(ctx context.Context, room id.RoomID, t matrixrtc.Transport) (Access, error) {
	return b.access(ctx, room, t)
}

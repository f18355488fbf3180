package egress

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/twitchtv/twirp"
)

// API is what the backend asks of a LiveKit server (its Twirp server API). The lksdk
// clients implement it; unit tests use a fake.
type API interface {
	// RoomExists reports whether the server has a room of that name now.
	RoomExists(ctx context.Context, room string) (bool, error)
	// Participants lists a room's participants with their tracks; ErrNoRoom when the room
	// is gone.
	Participants(ctx context.Context, room string) ([]*livekit.ParticipantInfo, error)
	StartTrack(ctx context.Context, req *livekit.TrackEgressRequest) (*livekit.EgressInfo, error)
	StartRoomComposite(ctx context.Context, req *livekit.RoomCompositeEgressRequest) (*livekit.EgressInfo, error)
	Stop(ctx context.Context, egressID string) (*livekit.EgressInfo, error)
	// List returns the egresses of a room (ended ones too, while the server keeps them).
	List(ctx context.Context, room string) ([]*livekit.EgressInfo, error)
}

// ErrNoRoom is returned when a LiveKit room does not exist.
var ErrNoRoom = errors.New("the LiveKit room does not exist")

// apiTimeout bounds one server API call.
const apiTimeout = 15 * time.Second

// serverAPI talks to one deployment with server-sdk-go's clients.
type serverAPI struct {
	rooms  *lksdk.RoomServiceClient
	egress *lksdk.EgressClient
}

// NewAPI returns the API of a server (httpURL: https:// or http://). Calls are bounded by
// their contexts.
func NewAPI(httpURL, key, secret string) API {
	return &serverAPI{
		rooms:  lksdk.NewRoomServiceClient(httpURL, key, secret),
		egress: lksdk.NewEgressClient(httpURL, key, secret),
	}
}

func (a *serverAPI) RoomExists(ctx context.Context, room string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	resp, err := a.rooms.ListRooms(ctx, &livekit.ListRoomsRequest{Names: []string{room}})
	if err != nil {
		return false, fmt.Errorf("list rooms: %w", err)
	}
	for _, r := range resp.Rooms {
		if r.Name == room {
			return true, nil
		}
	}
	return false, nil
}

func (a *serverAPI) Participants(ctx context.Context, room string) ([]*livekit.ParticipantInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	resp, err := a.rooms.ListParticipants(ctx, &livekit.ListParticipantsRequest{Room: room})
	if err != nil {
		var te twirp.Error
		if errors.As(err, &te) && te.Code() == twirp.NotFound {
			return nil, ErrNoRoom
		}
		return nil, fmt.Errorf("list participants: %w", err)
	}
	return resp.Participants, nil
}

func (a *serverAPI) StartTrack(ctx context.Context, req *livekit.TrackEgressRequest) (*livekit.EgressInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	return a.egress.StartTrackEgress(ctx, req)
}

func (a *serverAPI) StartRoomComposite(ctx context.Context, req *livekit.RoomCompositeEgressRequest) (*livekit.EgressInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	return a.egress.StartRoomCompositeEgress(ctx, req)
}

func (a *serverAPI) Stop(ctx context.Context, egressID string) (*livekit.EgressInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	return a.egress.StopEgress(ctx, &livekit.StopEgressRequest{EgressId: egressID})
}

func (a *serverAPI) List(ctx context.Context, room string) ([]*livekit.EgressInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	resp, err := a.egress.ListEgress(ctx, &livekit.ListEgressRequest{RoomName: room})
	if err != nil {
		return nil, fmt.Errorf("list egress: %w", err)
	}
	return resp.Items, nil
}

// apiError turns a server API error into words for the room: Twirp's message without
// the transport noise.
func apiError(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "context deadline exceeded") {
		return fmt.Sprintf("no LiveKit Egress worker accepted it within %s (none is running, or none has enough free CPU: Egress reserves room_composite_cpu_cost, 4 CPUs by default, for a room composite)", apiTimeout)
	}
	var te twirp.Error
	if errors.As(err, &te) {
		switch {
		case te.Code() == twirp.Unavailable || te.Code() == twirp.DeadlineExceeded || te.Msg() == "no response from servers":
			return "no LiveKit Egress worker answered (is one running, connected to the server's Redis, with CPU to spare?): " + te.Msg()
		case te.Code() == twirp.Unauthenticated || te.Code() == twirp.PermissionDenied:
			return "the server refused the API key: " + te.Msg()
		}
		return te.Msg()
	}
	return err.Error()
}

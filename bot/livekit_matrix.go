package bot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
)

// The bot's call membership comes with a delayed leave when the homeserver supports
// delayed events (MSC4140), so a crashed bot does not stay listed in calls.
var _ matrixrtc.DelayedEvents = botMatrix{}

// SupportsDelayedEvents asks the homeserver's /versions for MSC4140.
func (m botMatrix) SupportsDelayedEvents(ctx context.Context) bool {
	v, err := m.b.client.Versions(ctx)
	if err != nil {
		m.b.log.Debug().Err(err).Msg("Could not read the homeserver's versions")
		return false
	}
	return v.UnstableFeatures["org.matrix.msc4140"]
}

// SendDelayedState schedules a state event.
func (m botMatrix) SendDelayedState(ctx context.Context, roomID id.RoomID, t event.Type, stateKey string, content any, delay time.Duration) (string, error) {
	resp, err := m.b.client.SendStateEvent(ctx, roomID, t, stateKey, content, mautrix.ReqSendEvent{UnstableDelay: delay})
	if err != nil {
		return "", fmt.Errorf("schedule %s state: %w", t.Type, err)
	}
	if resp.UnstableDelayID == "" {
		// The server sent the event right away instead of scheduling it.
		return "", errors.New("the homeserver did not schedule the delayed event")
	}
	return string(resp.UnstableDelayID), nil
}

// UpdateDelayedEvent restarts, sends or cancels a scheduled event, with the current
// endpoint (…/delayed_events/{id}/{action}) and the older one (…/delayed_events/{id} with
// the action in the body) as js-sdk does.
func (m botMatrix) UpdateDelayedEvent(ctx context.Context, delayID, action string) error {
	cli := m.b.client
	url := cli.BuildClientURL("unstable", "org.matrix.msc4140", "delayed_events", delayID, action)
	_, err := cli.MakeRequest(ctx, http.MethodPost, url, struct{}{}, nil)
	if err == nil {
		return nil
	}
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) && httpErr.Response != nil && (httpErr.Response.StatusCode == http.StatusNotFound || httpErr.Response.StatusCode == http.StatusMethodNotAllowed) {
		if _, err2 := cli.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: id.DelayID(delayID), Action: event.DelayAction(action)}); err2 == nil {
			return nil
		}
	}
	return fmt.Errorf("%s delayed event: %w", action, err)
}

// liveKitTrust says which JWT services the LiveKit backend may send the bot's OpenID token
// to: the operator's livekit.trusted_jwt_services, and those the homeservers advertise,
// looked up with the bot's own HTTP client.
func (b *Bot) liveKitTrust() livekit.TrustOptions {
	return livekit.TrustOptions{
		TrustedServices: b.cfg.LiveKit.TrustedJWTServices,
		HTTPClient:      b.client.Client,
		Transports:      botMatrix{b}.rtcTransports,
	}
}

// rtcTransports lists the LiveKit services the bot's homeserver offers (MSC4143
// rtc/transports), or none when it does not advertise MatrixRTC.
func (m botMatrix) rtcTransports(ctx context.Context) ([]string, error) {
	cli := m.b.client
	if cli.SpecVersions == nil {
		if _, err := cli.Versions(ctx); err != nil {
			return nil, fmt.Errorf("read the homeserver's versions: %w", err)
		}
	}
	if !cli.SpecVersions.Supports(mautrix.FeatureUnstableMatrixRTC) && !cli.SpecVersions.Supports(mautrix.FeatureStableMatrixRTC) {
		return nil, nil
	}
	resp, err := cli.RTCTransports(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the homeserver's RTC transports: %w", err)
	}
	var out []string
	if resp == nil {
		return nil, nil
	}
	for _, t := range resp.RTCTransports {
		if t != nil && t.Type == "livekit" && t.LivekitServiceURL != "" {
			out = append(out, t.LivekitServiceURL)
		}
	}
	return out, nil
}

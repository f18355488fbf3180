package bot

import (
	"context"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/egress"
)

// newEgressBackend creates the Egress backend when livekit.deployments lists servers; ec
// is the subscriber backend, which finds Element Call calls' SFUs for it.
func (b *Bot) newEgressBackend(ec egress.ElementCall) (call.Backend, error) {
	if len(b.cfg.LiveKit.Deployments) == 0 {
		return nil, nil
	}
	opts := egress.Options{
		Deployments:       b.cfg.LiveKit.Deployments,
		RecordElementCall: b.cfg.LiveKit.RecordElementCallWithEgress,
		ElementCall:       ec,
		CommandPrefix:     b.cfg.Bot.CommandPrefix,
		// Aliases in allowed_rooms are resolved through the homeserver, never taken from
		// what a room says about itself.
		ResolveAlias: func(ctx context.Context, alias id.RoomAlias) (id.RoomID, error) {
			resp, err := b.client.ResolveAlias(ctx, alias)
			if err != nil {
				return "", err
			}
			return resp.RoomID, nil
		},
	}
	if store := b.lc.EgressStore(); store != nil {
		opts.Store = store // uploads into storage.s3, recorded like the bot's own
	}
	be, err := egress.New(botMatrix{b}, b.rec, opts, b.log)
	if err != nil {
		return nil, err
	}
	b.egress = be
	if b.cfg.HTTP.Listen == "" {
		b.log.Warn().Msg("LiveKit deployments are configured but http.listen is not: the bot cannot receive LiveKit's webhooks and follows egresses by polling the server API")
	}
	return be, nil
}

// egressStartArgs is what !help shows after !start when LiveKit rooms can be recorded.
func (b *Bot) egressStartArgs() string {
	if len(b.cfg.LiveKit.Deployments) == 0 {
		return ""
	}
	return "[Meet room URL | LiveKit room] [tracks|composite|audio]"
}

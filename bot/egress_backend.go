package bot

import (
	"context"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/egress"
	"github.com/matrix-recorder/matrix-recorder/httpserver"
)

// egressHooks is what the bot wires around the LiveKit Egress backend: its webhook routes
// on the HTTP server and the bucket notifications of the objects Egress uploads.
type egressHooks struct {
	be    *egress.Backend
	store *egressStore // nil without storage.s3
}

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
	var store *egressStore
	if b.st != nil && b.st.s3 != nil {
		store = newEgressStore(b.st)
		opts.Store = store
	}
	be, err := egress.New(botMatrix{b}, b.rec, opts, b.log)
	if err != nil {
		return nil, err
	}
	b.egress = &egressHooks{be: be, store: store}
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

// egressRoutes registers the LiveKit webhook paths on the HTTP server.
func (b *Bot) egressRoutes(srv *httpserver.Server) {
	if b.egress == nil {
		return
	}
	lk := b.egress.be.Handler()
	for _, p := range b.egress.be.WebhookPaths() {
		srv.Handle(p, lk)
	}
}

// confirmStoreEvent takes a bucket notification: an object LiveKit Egress uploaded goes to
// the Egress store (it confirms that upload), anything else to the uploader.
func (st *storeRT) confirmStoreEvent(ctx context.Context, bucket, key string, size int64, etag string) (bool, error) {
	if eh := st.b.egress; eh != nil && eh.store != nil && eh.store.storeEvent(bucket, key, size, etag) {
		return true, nil
	}
	return st.up.ConfirmFromStore(ctx, bucket, key, size, etag)
}

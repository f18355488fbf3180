package egress

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/livekit/protocol/webhook"
	"google.golang.org/protobuf/encoding/protojson"
)

// maxWebhookBody bounds a webhook's body (an EgressInfo with its request is a few KiB).
const maxWebhookBody = 1 << 20

// Replays: livekit-server signs each webhook with a token valid for 5 minutes, and the bot
// takes each event id once within webhookReplayWindow (longer than that validity, with
// room for clock skew), so a captured webhook cannot be played again. Events created
// before the window are old news and ignored too.
const (
	webhookReplayWindow = 15 * time.Minute
	maxSeenWebhooks     = 1 << 16
)

// WebhookPaths lists the paths LiveKit's webhooks are taken on.
func (b *Backend) WebhookPaths() []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range b.deps {
		if !seen[d.WebhookPath] {
			seen[d.WebhookPath] = true
			out = append(out, d.WebhookPath)
		}
	}
	sort.Strings(out)
	return out
}

// Handler serves LiveKit's webhooks on every deployment's webhook_path (POST only). A
// webhook is taken only when its Authorization header is a token signed with the API
// secret of a deployment on that path whose sha256 claim is the body's checksum
// (livekit/protocol's webhook.Receive checks it); anything else is answered 401 and
// ignored. A request without the header or without a Content-Length is refused before
// its body is read, and a body is read up to maxWebhookBody only. An event already taken
// (same id) is answered 200 and ignored.
func (b *Backend) Handler() http.Handler {
	mux := http.NewServeMux()
	byPath := map[string][]*deployment{}
	for _, d := range b.deps {
		byPath[d.WebhookPath] = append(byPath[d.WebhookPath], d)
	}
	for path, deps := range byPath {
		mux.HandleFunc("POST "+path, b.webhook(deps))
	}
	return mux
}

func (b *Backend) webhook(deps []*deployment) http.HandlerFunc {
	secrets := map[string]string{}
	byKey := map[string]*deployment{}
	for _, d := range deps {
		secrets[d.APIKey] = d.secret
		byKey[d.APIKey] = d
	}
	keys := auth.NewFileBasedKeyProviderFromMap(secrets)
	return func(w http.ResponseWriter, r *http.Request) {
		log := b.log.With().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Logger()
		tok := strings.TrimSpace(r.Header.Get("Authorization"))
		if len(tok) > 7 && strings.EqualFold(tok[:7], "bearer ") {
			tok = strings.TrimSpace(tok[7:])
		}
		switch {
		case tok == "":
			log.Warn().Msg("Rejected a LiveKit webhook: no Authorization header")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		case r.ContentLength < 0:
			log.Warn().Msg("Rejected a LiveKit webhook: no Content-Length")
			http.Error(w, "length required", http.StatusLengthRequired)
			return
		case r.ContentLength > maxWebhookBody:
			log.Warn().Int64("bytes", r.ContentLength).Msg("Rejected a LiveKit webhook: too large")
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if len(body) > maxWebhookBody {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Header.Set("Authorization", tok)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if _, err := webhook.Receive(r, keys); err != nil {
			log.Warn().Err(err).Msg("Rejected a LiveKit webhook: the signature does not verify")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		// Verified: the token names the key of the deployment that signed it.
		var d *deployment
		if v, err := auth.ParseAPIToken(tok); err == nil {
			d = byKey[v.APIKey()]
		}
		if d == nil {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		ev := &livekit.WebhookEvent{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true, AllowPartial: true}).Unmarshal(body, ev); err != nil {
			log.Warn().Err(err).Str("deployment", d.Name).Msg("A signed LiveKit webhook does not parse")
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		id := ev.Id
		if id == "" {
			sum := sha256.Sum256(body)
			id = "sha256:" + base64.StdEncoding.EncodeToString(sum[:])
		}
		now := time.Now()
		switch {
		case ev.CreatedAt != 0 && now.Sub(time.Unix(ev.CreatedAt, 0)) > webhookReplayWindow:
			log.Warn().Str("deployment", d.Name).Str("event_id", ev.Id).Int64("created_at", ev.CreatedAt).Msg("Ignored a LiveKit webhook older than the replay window")
		case !b.seen.first(d.Name+"/"+id, now):
			log.Info().Str("deployment", d.Name).Str("event_id", ev.Id).Str("event", ev.Event).Msg("Ignored a LiveKit webhook already received")
		default:
			b.onWebhook(d, ev)
		}
		w.WriteHeader(http.StatusOK)
	}
}

// replayGuard remembers the webhook ids taken within a window, at most max of them (the
// oldest are forgotten first; only signed webhooks are ever added).
type replayGuard struct {
	window time.Duration
	max    int
	mu     sync.Mutex
	seen   map[string]time.Time
	order  []string // ids in the order they were taken
}

func newReplayGuard(window time.Duration, max int) *replayGuard {
	return &replayGuard{window: window, max: max, seen: map[string]time.Time{}}
}

// first reports whether id was not taken within the window, and takes it.
func (g *replayGuard) first(id string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(g.order) > 0 && now.Sub(g.seen[g.order[0]]) > g.window {
		delete(g.seen, g.order[0])
		g.order = g.order[1:]
	}
	if _, ok := g.seen[id]; ok {
		return false
	}
	for len(g.order) >= g.max {
		delete(g.seen, g.order[0])
		g.order = g.order[1:]
	}
	g.seen[id] = now
	g.order = append(g.order, id)
	return true
}

// onWebhook routes a verified event: egress news to the recording that owns the egress,
// room news (tracks, participants, the end) to the recording of that room, as a poll.
func (b *Backend) onWebhook(d *deployment, ev *livekit.WebhookEvent) {
	if info := ev.EgressInfo; info != nil && info.EgressId != "" {
		b.mu.Lock()
		r := b.byEgress[info.EgressId]
		b.mu.Unlock()
		if r == nil {
			b.log.Debug().Str("event", ev.Event).Str("egress_id", info.EgressId).Msg("Webhook about an egress this bot does not follow")
			return
		}
		r.log.Debug().Str("event", ev.Event).Str("egress_id", info.EgressId).Stringer("status", info.Status).Msg("Egress webhook")
		r.loop.Post(func() {
			r.onInfo(info)
			r.checkStopped(r.ctx)
		})
		return
	}
	room := ""
	if ev.Room != nil {
		room = ev.Room.Name
	}
	if room == "" {
		return
	}
	b.mu.Lock()
	r := b.byRoom[d.Name+"/"+room]
	b.mu.Unlock()
	if r != nil {
		r.poke()
	}
}

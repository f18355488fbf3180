package egress

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"
)

// maxWebhookBody bounds a webhook's body (an EgressInfo with its request is a few KiB).
const maxWebhookBody = 1 << 20

// Webhook errors; every one is answered 401.
var (
	errNoSignature  = errors.New("no Authorization header")
	errUnknownKey   = errors.New("signed with an API key no deployment on this path has")
	errBadSignature = errors.New("the signature does not verify with the API secret")
	errBodyChanged  = errors.New("the body does not match the signed checksum")
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
// secret of a deployment on that path whose sha256 claim is the body's checksum;
// anything else is answered 401 and ignored.
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
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if len(body) > maxWebhookBody {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		d, err := verify(r.Header.Get("Authorization"), body, deps)
		if err != nil {
			b.log.Warn().Err(err).Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Msg("Rejected a LiveKit webhook")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		ev := &livekit.WebhookEvent{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true, AllowPartial: true}).Unmarshal(body, ev); err != nil {
			b.log.Warn().Err(err).Str("deployment", d.Name).Msg("A signed LiveKit webhook does not parse")
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		b.onWebhook(d, ev)
		w.WriteHeader(http.StatusOK)
	}
}

// verify checks a webhook's signature as LiveKit makes it: a JWT signed with the API
// secret, naming the API key as issuer, whose sha256 claim is the base64 SHA-256 of the
// body. It returns the deployment that signed it.
func verify(header string, body []byte, deps []*deployment) (*deployment, error) {
	tok := strings.TrimSpace(header)
	if len(tok) > 7 && strings.EqualFold(tok[:7], "bearer ") {
		tok = strings.TrimSpace(tok[7:])
	}
	if tok == "" {
		return nil, errNoSignature
	}
	v, err := auth.ParseAPIToken(tok)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadSignature, err)
	}
	var d *deployment
	for _, c := range deps {
		if c.APIKey == v.APIKey() {
			d = c
			break
		}
	}
	if d == nil {
		return nil, errUnknownKey
	}
	_, claims, err := v.Verify(d.secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadSignature, err)
	}
	sum := sha256.Sum256(body)
	want := base64.StdEncoding.EncodeToString(sum[:])
	if claims == nil || subtle.ConstantTimeCompare([]byte(claims.Sha256), []byte(want)) != 1 {
		return nil, errBodyChanged
	}
	return d, nil
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

package matrixrtc

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
)

// Transport is a LiveKit focus a membership names: the JWT service that hands out tokens
// for its SFU.
type Transport struct {
	Type       string `json:"type"`
	ServiceURL string `json:"livekit_service_url,omitempty"`
	// Alias is the legacy livekit_alias (the Matrix room id); not sent to the service.
	Alias string `json:"livekit_alias,omitempty"`
	// Owner is the member whose membership names this focus (its homeserver may vouch for
	// it); set by PublishTransports, never sent.
	Owner id.UserID `json:"-"`
}

// IsLiveKit reports whether the transport is a usable LiveKit focus.
func (t Transport) IsLiveKit() bool { return t.Type == "livekit" && t.ServiceURL != "" }

// ParseTransports reads a list of foci (a membership's, or the rtc_foci a homeserver
// advertises): shapes it does not know are skipped, as js-sdk skips them, at most 8 are
// taken, and every service URL gets its one spelling (NormalizeServiceURL).
func ParseTransports(raw json.RawMessage) ([]Transport, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("not a list")
	}
	var out []Transport
	for _, it := range items {
		if len(out) == maxTransports {
			break
		}
		var t Transport
		if err := json.Unmarshal(it, &t); err != nil || t.Type == "" {
			continue
		}
		if len(t.ServiceURL) > maxURLLength || len(t.Alias) > maxIDLength || !utf8.ValidString(t.ServiceURL) {
			continue
		}
		if t.ServiceURL != "" {
			norm, err := NormalizeServiceURL(t.ServiceURL)
			if err != nil {
				continue
			}
			t.ServiceURL = norm
		}
		out = append(out, t)
	}
	return out, nil
}

// NormalizeServiceURL returns the one spelling of a JWT service URL that comparisons use:
// lower-case scheme and host, no default port, no trailing slash. Only absolute http(s)
// URLs without credentials, query or fragment are accepted (errors wrap ErrServiceURL).
func NormalizeServiceURL(s string) (string, error) {
	if len(s) > maxURLLength {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrServiceURL, maxURLLength)
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("%w %q", ErrServiceURL, clip(s, 200))
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Hostname() == "" {
		return "", fmt.Errorf("%w %q", ErrServiceURL, clip(s, 200))
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	u.Host = host
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u.String(), nil
}

// clip cuts s to n bytes for messages.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// PublishTransports returns the LiveKit foci a call's media is published on, one per
// distinct JWT service, as clients pick them (js-sdk CallMembership.getTransport): an
// oldest_membership (or legacy) membership publishes on the oldest membership's first
// focus, a multi_sfu or sticky one on its own first focus. Each names its Owner. members
// are one call's, without the bot's own membership.
func PublishTransports(members []Member) []Transport {
	if len(members) == 0 {
		return nil
	}
	sorted := append([]Member(nil), members...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].CreatedTs != sorted[j].CreatedTs {
			return sorted[i].CreatedTs < sorted[j].CreatedTs
		}
		return sorted[i].Key().Compare(sorted[j].Key()) < 0
	})
	oldest := sorted[0]
	seen := map[string]bool{}
	var out []Transport
	for i, m := range sorted {
		t, ok := m.transport(oldest, i == 0)
		if !ok || !t.IsLiveKit() || seen[t.ServiceURL] {
			continue
		}
		seen[t.ServiceURL] = true
		out = append(out, t)
	}
	return out
}

// transport is the focus m publishes on, given the oldest membership of the call (m itself
// when isOldest), with the user whose membership names it as its Owner.
func (m Member) transport(oldest Member, isOldest bool) (Transport, bool) {
	switch {
	case m.Format == FormatSticky, m.FocusSelection == SelectMultiSFU:
	case m.FocusSelection == SelectOldest || m.Format == FormatLegacy:
		if !isOldest {
			return oldest.transport(oldest, true)
		}
	default:
		return Transport{}, false
	}
	if len(m.Transports) == 0 {
		return Transport{}, false
	}
	t := m.Transports[0]
	t.Owner = m.UserID
	return t, true
}

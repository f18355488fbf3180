package matrixrtc

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/event"
)

// parseLegacy reads a "memberships" list (js-sdk 28-35): entries that are not valid are
// skipped, the first problem is returned with the valid ones.
func parseLegacy(evt *event.Event, list json.RawMessage, ts time.Time) ([]Member, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(list, &items); err != nil {
		return nil, fmt.Errorf("legacy memberships: %w", err)
	}
	if len(items) > maxPerEvent {
		items = items[:maxPerEvent]
	}
	var out []Member
	var first error
	for _, it := range items {
		m, err := parseLegacyEntry(evt, it, ts)
		if err != nil {
			if !errors.Is(err, ErrOtherCall) {
				first = firstErr(first, err)
			}
			continue
		}
		out = append(out, m)
	}
	return out, first
}

func parseLegacyEntry(evt *event.Event, raw json.RawMessage, ts time.Time) (Member, error) {
	var d sessionData
	if err := json.Unmarshal(raw, &d); err != nil {
		return Member{}, fmt.Errorf("legacy membership: %w", err)
	}
	m, err := commonSession(evt, d, ts)
	if err != nil {
		return Member{}, err
	}
	m.Format = FormatLegacy
	m.FocusSelection = SelectOldest
	if m.Transports, err = ParseTransports(d.FociActive); err != nil {
		return Member{}, fmt.Errorf("legacy membership foci_active: %w", err)
	}
	switch {
	case d.Expires != nil:
		if m.ExpiresAt, err = expiresAfter(m.CreatedTs, *d.Expires); err != nil {
			return Member{}, fmt.Errorf("legacy membership %w", err)
		}
	case d.ExpiresTs != nil:
		e, err := d.ExpiresTs.Int64()
		if err != nil {
			return Member{}, fmt.Errorf("legacy membership expires_ts %q", d.ExpiresTs.String())
		}
		m.ExpiresAt = time.UnixMilli(e)
	default:
		return Member{}, fmt.Errorf("legacy membership without expires")
	}
	return m, nil
}

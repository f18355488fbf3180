package egress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/config"
)

// target is what one !start asks for: a room of a deployment and a mode.
type target struct {
	dep  *deployment
	room string
	mode string
	// what names the room for messages ("the Meet room https://…", "the LiveKit room x on meet").
	what string
	// members maps LiveKit identities to Matrix devices (Element Call rooms).
	members map[string]matrixrtc.DeviceKey
	// slug is the Meet room's slug when a Meet URL named the room.
	slug string
	// by is who started the recording.
	by id.UserID
}

// request is a !start's arguments: the room reference (if any) and the mode (if any).
type request struct {
	ref  string
	mode string
}

// Limits on what a user may type or a server may answer.
const (
	maxRoomName   = 256
	maxMeetAnswer = 64 << 10
)

var (
	meetSlug = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`)
	// roomName accepts what LiveKit room names are in practice: printable, no spaces (the
	// hashed names of lk-jwt-service are base64 and may hold "/" and "+").
	roomName = regexp.MustCompile(`^[^\s\x00-\x1f\x7f]{1,256}$`)
)

// parseArgs reads "[<room>] [tracks|composite|audio]" in any order.
func parseArgs(args []string) (request, error) {
	var r request
	for _, a := range args {
		switch strings.ToLower(a) {
		case config.EgressTracks, config.EgressComposite, config.EgressAudio:
			r.mode = strings.ToLower(a)
			continue
		}
		if r.ref != "" {
			return request{}, fmt.Errorf("I can record one room at a time; I read both %q and %q as rooms", r.ref, a)
		}
		if len(a) > 2048 {
			return request{}, errors.New("that room reference is too long")
		}
		r.ref = a
	}
	return r, nil
}

// resolve turns a room reference into a deployment and a LiveKit room name the asker may
// record. What the config does not allow is refused (a *refusal) before LiveKit or Meet
// is asked anything, so a refused !start cannot even learn whether a room exists.
func (b *Backend) resolve(ctx context.Context, who asker, ref string) (*target, error) {
	if strings.HasPrefix(strings.ToLower(ref), "http://") || strings.HasPrefix(strings.ToLower(ref), "https://") {
		return b.resolveMeet(ctx, who, ref)
	}
	if dep, room, ok := strings.Cut(ref, "/"); ok {
		if d := b.deployment(dep); d != nil {
			if !roomName.MatchString(room) {
				return nil, fmt.Errorf("%q is not a LiveKit room name", room)
			}
			if !b.mayRecord(ctx, d, who, room) {
				return nil, &refusal{what: fmt.Sprintf("the LiveKit room %s on %s", room, d.Name), deps: []string{d.Name}, room: who.room}
			}
			return b.checkRoom(ctx, d, room)
		}
	}
	if !roomName.MatchString(ref) {
		return nil, fmt.Errorf("%q is not a LiveKit room name", ref)
	}
	var allowed []*deployment
	for _, d := range b.deps {
		if b.mayRecord(ctx, d, who, ref) {
			allowed = append(allowed, d)
		}
	}
	switch {
	case len(allowed) == 0 && len(b.deps) == 1:
		return nil, &refusal{what: fmt.Sprintf("the LiveKit room %s on %s", ref, b.deps[0].Name), deps: []string{b.deps[0].Name}, room: who.room}
	case len(allowed) == 0:
		names := make([]string, len(b.deps))
		for i, d := range b.deps {
			names[i] = d.Name
		}
		return nil, &refusal{what: fmt.Sprintf("a LiveKit room called %s", ref), deps: names, room: who.room}
	case len(b.deps) == 1:
		return b.checkRoom(ctx, allowed[0], ref)
	}
	var errs []string
	for _, d := range allowed {
		ok, err := d.api.RoomExists(ctx, ref)
		if err != nil {
			errs = append(errs, d.Name+": "+apiError(err))
			continue
		}
		if ok {
			return &target{dep: d, room: ref, what: fmt.Sprintf("the LiveKit room %s on %s", ref, d.Name)}, nil
		}
	}
	names := make([]string, len(allowed))
	for i, d := range allowed {
		names[i] = d.Name
	}
	msg := fmt.Sprintf("none of my LiveKit deployments (%s) has a room called %q right now", strings.Join(names, ", "), ref)
	if len(errs) > 0 {
		msg += " (" + strings.Join(errs, "; ") + ")"
	}
	return nil, errors.New(msg)
}

// checkRoom makes sure the room exists on the deployment: Egress can only record a room
// that is running.
func (b *Backend) checkRoom(ctx context.Context, d *deployment, room string) (*target, error) {
	if !roomName.MatchString(room) {
		return nil, fmt.Errorf("%q is not a LiveKit room name", room)
	}
	ok, err := d.api.RoomExists(ctx, room)
	if err != nil {
		return nil, fmt.Errorf("I could not ask %s about the room: %s", d.Name, apiError(err))
	}
	if !ok {
		return nil, fmt.Errorf("there is no LiveKit room called %q on %s right now (nobody is in it)", room, d.Name)
	}
	return &target{dep: d, room: room, what: fmt.Sprintf("the LiveKit room %s on %s", room, d.Name)}, nil
}

// resolveMeet finds a La Suite Meet room: the first path segment after a configured prefix
// is the room's slug (or its id); Meet's API says which LiveKit room it meets in.
//
// The Meet room is allowed when a pattern of the asker's grants matches its slug or the
// LiveKit room Meet names for it. A room with no grant at all on the deployment is
// refused before Meet is asked.
func (b *Backend) resolveMeet(ctx context.Context, who asker, raw string) (*target, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%q is not a web address", raw)
	}
	norm := strings.ToLower(u.Scheme + "://" + u.Host + u.EscapedPath())
	for _, d := range b.deps {
		for _, p := range d.MeetURLPrefixes {
			pu, err := url.Parse(p)
			if err != nil {
				continue
			}
			prefix := strings.ToLower(strings.TrimRight(pu.Scheme+"://"+pu.Host+pu.EscapedPath(), "/")) + "/"
			if !strings.HasPrefix(norm+"/", prefix) {
				continue
			}
			rest := strings.Trim(u.Path[len(strings.TrimRight(pu.Path, "/")):], "/")
			slug, _, _ := strings.Cut(rest, "/")
			if !meetSlug.MatchString(slug) {
				return nil, fmt.Errorf("%q does not name a Meet room (expected %s<room>)", raw, p)
			}
			what := "the Meet room " + u.Scheme + "://" + u.Host + strings.TrimRight(pu.Path, "/") + "/" + slug
			refused := &refusal{what: what, deps: []string{d.Name}, room: who.room}
			if !b.mayRecordSome(ctx, d, who) {
				return nil, refused
			}
			bySlug := b.mayRecord(ctx, d, who, slug)
			room, err := b.meetRoom(ctx, d, pu, slug)
			if err != nil {
				return nil, err
			}
			if !bySlug && !b.mayRecord(ctx, d, who, room) {
				return nil, refused
			}
			t, err := b.checkRoom(ctx, d, room)
			if err != nil {
				if strings.Contains(err.Error(), "there is no LiveKit room") {
					return nil, fmt.Errorf("the Meet room %s is empty: Egress can only record while someone is in it", raw)
				}
				return nil, err
			}
			t.what, t.slug = what, slug
			return t, nil
		}
	}
	prefixes := []string{}
	for _, d := range b.deps {
		prefixes = append(prefixes, d.MeetURLPrefixes...)
	}
	if len(prefixes) == 0 {
		return nil, errors.New("I do not record Meet rooms here (no meet_url_prefixes are configured); give the LiveKit room's name instead")
	}
	return nil, fmt.Errorf("%s is not a Meet room I can record (I record rooms under %s)", raw, strings.Join(prefixes, ", "))
}

// meetRoom asks Meet's API for the LiveKit room of a slug. Registered rooms meet under
// their id (a UUID), unregistered ones under their slug. A UUID is taken as it is; when
// the API cannot be asked (private instance, network), the slug is tried as the name.
func (b *Backend) meetRoom(ctx context.Context, d *deployment, prefix *url.URL, slug string) (string, error) {
	if isUUID(slug) {
		return strings.ToLower(slug), nil
	}
	api := d.MeetAPIURL
	if api == "" {
		api = prefix.Scheme + "://" + prefix.Host + "/api/v1.0/"
	}
	endpoint := strings.TrimRight(api, "/") + "/rooms/" + url.PathEscape(slug) + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := b.opts.HTTPClient.Do(req)
	if err != nil {
		b.log.Warn().Err(err).Str("meet_api", endpoint).Msg("Could not ask Meet for the room; trying its slug as the LiveKit room name")
		return slug, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxMeetAnswer+1))
	if err != nil || len(data) > maxMeetAnswer {
		return slug, nil
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", fmt.Errorf("Meet has no room %q", slug)
	case resp.StatusCode != http.StatusOK:
		b.log.Warn().Int("status", resp.StatusCode).Str("meet_api", endpoint).Msg("Meet did not describe the room; trying its slug as the LiveKit room name")
		return slug, nil
	}
	var room struct {
		ID      *string `json:"id"`
		Slug    string  `json:"slug"`
		LiveKit *struct {
			Room string `json:"room"`
		} `json:"livekit"`
	}
	if err := json.Unmarshal(data, &room); err != nil {
		return "", fmt.Errorf("Meet's answer about %q is not JSON: %w", slug, err)
	}
	switch {
	case room.LiveKit != nil && roomName.MatchString(room.LiveKit.Room):
		return room.LiveKit.Room, nil
	case room.ID != nil && isUUID(*room.ID):
		return strings.ToLower(*room.ID), nil
	}
	return slug, nil
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func isUUID(s string) bool { return uuidPattern.MatchString(s) }

// clip shortens user input for logs.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

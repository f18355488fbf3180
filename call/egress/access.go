package egress

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/config"
)

// Who may record what. Egress records with the operator's API key, so the bot, not
// LiveKit, decides which LiveKit rooms a Matrix room may have recorded: a deployment's
// allowed_rooms (Matrix room → LiveKit room names or patterns), allowed_users (any room,
// from anywhere) and allow_all. Nothing else opens a room: not what a user types, not a
// room's name or canonical alias, not what a call member's JWT service answers. The one
// exception is a room's own Element Call call (ownCall), which its members may record
// without any grant.

// asker is who asks for a recording: the Matrix room the links go to and the user.
type asker struct {
	room id.RoomID
	by   id.UserID
}

// refusal is a !start the config does not allow. Its message names the keys that would.
type refusal struct {
	what string   // "the LiveKit room x on meet"
	deps []string // the deployments whose keys would allow it
	room id.RoomID
}

func (r *refusal) Error() string {
	return fmt.Sprintf("this room may not record %s. The bot's operator can allow it in %s (this room is %s), or list you in %s",
		r.what, deploymentKeys(r.deps, "allowed_rooms"), r.room, deploymentKeys(r.deps, "allowed_users"))
}

// deploymentKeys names a key of several deployments: "livekit.deployments[a].k or …[b].k".
func deploymentKeys(deps []string, key string) string {
	keys := make([]string, 0, len(deps))
	for _, d := range deps {
		keys = append(keys, config.DeploymentKey(d, key))
	}
	return strings.Join(keys, " or ")
}

// aliasTTL is how long a resolved alias is trusted; failures are kept for aliasRetry so a
// stranger typing !start cannot make the bot hammer the homeserver.
const (
	aliasTTL     = time.Minute
	aliasRetry   = 30 * time.Second
	aliasTimeout = 10 * time.Second
)

// aliases resolves the aliases of allowed_rooms through the homeserver, with a short
// cache. Its size is bounded by the config's aliases.
type aliases struct {
	resolve func(ctx context.Context, alias id.RoomAlias) (id.RoomID, error)
	mu      sync.Mutex
	cache   map[id.RoomAlias]aliasEntry
}

type aliasEntry struct {
	room  id.RoomID
	until time.Time
}

// lookupAlias returns the room an alias names now ("" when it cannot be resolved).
func (b *Backend) lookupAlias(ctx context.Context, alias id.RoomAlias) id.RoomID {
	a := &b.aliases
	a.mu.Lock()
	if e, ok := a.cache[alias]; ok && time.Now().Before(e.until) {
		a.mu.Unlock()
		return e.room
	}
	a.mu.Unlock()
	if a.resolve == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, aliasTimeout)
	defer cancel()
	room, err := a.resolve(ctx, alias)
	e := aliasEntry{room: room, until: time.Now().Add(aliasTTL)}
	if err != nil || room == "" {
		b.log.Warn().Err(err).Str("alias", string(alias)).Msg("Could not resolve an alias of allowed_rooms; it allows nothing until it resolves")
		e = aliasEntry{until: time.Now().Add(aliasRetry)}
	}
	a.mu.Lock()
	if a.cache == nil {
		a.cache = map[id.RoomAlias]aliasEntry{}
	}
	a.cache[alias] = e
	a.mu.Unlock()
	return e.room
}

// grantsRoom reports whether a grant's matrix_room is the asking room: its id, or an
// alias that resolves to it through the homeserver.
func (b *Backend) grantsRoom(ctx context.Context, g config.LiveKitRoomGrant, room id.RoomID) bool {
	switch {
	case strings.HasPrefix(g.MatrixRoom, "!"):
		return id.RoomID(g.MatrixRoom) == room
	case strings.HasPrefix(g.MatrixRoom, "#"):
		return b.lookupAlias(ctx, id.RoomAlias(g.MatrixRoom)) == room
	}
	return false
}

// mayRecord reports whether the asker may record a LiveKit room of d known by any of
// names (its LiveKit name; for a Meet room also its slug).
func (b *Backend) mayRecord(ctx context.Context, d *deployment, who asker, names ...string) bool {
	if d.AllowAll || d.userAllowed(who.by) {
		return true
	}
	// Room ids first: an alias is resolved only when its patterns would allow the room.
	for _, aliasPass := range []bool{false, true} {
		for _, g := range d.AllowedRooms {
			if strings.HasPrefix(g.MatrixRoom, "#") != aliasPass || !matchesAny(g.LiveKitRooms, names) {
				continue
			}
			if b.grantsRoom(ctx, g, who.room) {
				return true
			}
		}
	}
	return false
}

// mayRecordSome reports whether the asker may record any room at all on d: when not, a
// !start is refused before anything is asked of LiveKit or Meet.
func (b *Backend) mayRecordSome(ctx context.Context, d *deployment, who asker) bool {
	if d.AllowAll || d.userAllowed(who.by) {
		return true
	}
	for _, aliasPass := range []bool{false, true} {
		for _, g := range d.AllowedRooms {
			if strings.HasPrefix(g.MatrixRoom, "#") == aliasPass && b.grantsRoom(ctx, g, who.room) {
				return true
			}
		}
	}
	return false
}

func (d *deployment) userAllowed(u id.UserID) bool {
	if u == "" {
		return false
	}
	for _, a := range d.AllowedUsers {
		if id.UserID(a) == u {
			return true
		}
	}
	return false
}

// ownCall reports whether a LiveKit room is the Matrix room's own Element Call call: the
// name lk-jwt-service derives from the room id (unpadded base64 of SHA-256 over the room
// id and the call's slot, 0.4 and later) or the room id itself (earlier versions). A call
// member chooses the focus and so the JWT service, which may name any room; only these
// names are taken without a grant.
func ownCall(room id.RoomID, livekitRoom string) bool {
	return livekitRoom != "" && (livekitRoom == string(room) || livekitRoom == matrixrtc.RoomAlias(string(room), matrixrtc.MainSlot))
}

func matchesAny(patterns, names []string) bool {
	for _, p := range patterns {
		for _, n := range names {
			if n != "" && glob(p, n) {
				return true
			}
		}
	}
	return false
}

// glob matches name against pattern: * is any run of characters (none included, "/"
// included), ? one character, anything else itself. Iterative, linear in practice: the
// last * is the only one ever backtracked to.
func glob(pattern, name string) bool {
	p, n := []rune(pattern), []rune(name)
	pi, ni := 0, 0
	star, mark := -1, 0
	for ni < len(n) {
		switch {
		case pi < len(p) && (p[pi] == '?' || (p[pi] != '*' && p[pi] == n[ni])):
			pi++
			ni++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, ni
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			ni = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

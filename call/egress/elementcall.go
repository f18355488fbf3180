package egress

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/matrix-recorder/matrix-recorder/call/matrixrtc"
	"github.com/matrix-recorder/matrix-recorder/config"
)

// errUseSubscriber says the call is one the subscriber backend records (encrypted, or
// spread over several SFUs): nothing to tell the room.
var errUseSubscriber = errors.New("recorded by the subscriber backend")

// resolveElementCall finds the room's Element Call call on one of the deployments: the
// members' focus, the bot's access to it (its JWT service names the SFU and the LiveKit
// room), and who is who among the LiveKit identities.
//
// The focus is chosen by a call member, and its JWT service may answer with any SFU and
// any room: it could name a deployment's SFU and another room's call, and Egress (which
// records with the operator's API key, not with the token the service handed out) would
// record it. So the LiveKit room must be this room's own call (ownCall: the name the JWT
// service derives from this room's id), unless the config allows the room anyway.
func (b *Backend) resolveElementCall(ctx context.Context, who asker) (*target, error) {
	room := who.room
	if !b.opts.RecordElementCall || b.opts.ElementCall == nil {
		return nil, fmt.Errorf("name the room to record: %sstart <Meet room URL or LiveKit room name> [tracks|composite|audio]", b.opts.CommandPrefix)
	}
	if b.mx.IsEncrypted(ctx, room) {
		// Egress would write ciphertext: end-to-end encrypted media needs the subscriber.
		return nil, errUseSubscriber
	}
	foci, members, err := b.opts.ElementCall.CallFoci(ctx, room)
	if err != nil {
		return nil, fmt.Errorf("I could not read the room's call: %w", err)
	}
	switch {
	case len(foci) == 0:
		return nil, errors.New("nobody is in an Element Call call here")
	case len(foci) > 1:
		// Egress records one SFU; the subscriber joins them all.
		return nil, errUseSubscriber
	}
	acc, err := b.opts.ElementCall.FocusAccess(ctx, room, foci[0])
	if err != nil {
		return nil, fmt.Errorf("the call's JWT service did not let me in: %w", err)
	}
	var dep *deployment
	for _, d := range b.deps {
		if sameServer(d.URL, acc.URL) {
			dep = d
			break
		}
	}
	if dep == nil {
		b.log.Info().Str("sfu", acc.URL).Msg("The call's SFU is not a configured deployment; the subscriber records it")
		return nil, errUseSubscriber
	}
	if !roomName.MatchString(acc.Room) {
		return nil, fmt.Errorf("the JWT service named an unusable LiveKit room %q", acc.Room)
	}
	if !ownCall(room, acc.Room) && !b.mayRecord(ctx, dep, who, acc.Room) {
		b.log.Warn().Stringer("room_id", room).Stringer("sender", who.by).Str("jwt_service", foci[0].ServiceURL).Str("deployment", dep.Name).
			Str("livekit_room", acc.Room).Msg("A call's JWT service named a LiveKit room that is not this room's call; not recording it with Egress")
		return nil, fmt.Errorf("the call's JWT service named the LiveKit room %q on %s, which is not this room's call; I record only a room's own call this way (to record another LiveKit room from here, the operator lists it in %s)",
			acc.Room, dep.Name, config.DeploymentKey(dep.Name, "allowed_rooms"))
	}
	t := &target{dep: dep, room: acc.Room, members: map[string]matrixrtc.DeviceKey{},
		what: fmt.Sprintf("this room's Element Call call (LiveKit room %s on %s)", acc.Room, dep.Name)}
	for _, m := range members {
		if m.Identity != "" {
			t.members[m.Identity] = m.Key()
		}
	}
	return t, nil
}

// sameServer compares two LiveKit server URLs: ws and http name the same server as wss
// and https do, default ports included.
func sameServer(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return false
	}
	norm := func(u *url.URL) string {
		secure := u.Scheme == "wss" || u.Scheme == "https"
		port := u.Port()
		if port == "" {
			port = map[bool]string{true: "443", false: "80"}[secure]
		}
		return fmt.Sprintf("%t|%s|%s|%s", secure, strings.ToLower(u.Hostname()), port, strings.TrimRight(u.Path, "/"))
	}
	return norm(ua) == norm(ub)
}

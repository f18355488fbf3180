package bot

import (
	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/mesh"
)

// newBackends creates the group-call backends this bot offers on !start. Each backend
// package adds its constructor here.
func (b *Bot) newBackends() ([]call.Backend, error) {
	var out []call.Backend
	out = append(out, mesh.New(mesh.Config{CommandPrefix: b.cfg.Bot.CommandPrefix, MaxDuration: b.cfg.Calls.MaxDuration.D(), ICETimeout: b.cfg.Calls.ICETimeout.D()}, botMatrix{b}, b.rtc, b.rec, b.log))
	lkb := livekit.New(botMatrix{b}, b.rec, livekit.Options{
		OnCallBegan: b.onCallBegan, OnRing: b.onRing, Trust: b.liveKitTrust(), CommandPrefix: b.cfg.Bot.CommandPrefix,
	}, b.log)
	out = append(out, lkb)
	eg, err := b.newEgressBackend(lkb) // egress_backend.go
	if err != nil {
		return nil, err
	}
	if eg != nil {
		out = append(out, eg)
	}
	return out, nil
}

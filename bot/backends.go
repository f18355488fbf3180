package bot

import (
	"github.com/matrix-recorder/matrix-recorder/call"
	"github.com/matrix-recorder/matrix-recorder/call/livekit"
	"github.com/matrix-recorder/matrix-recorder/call/mesh"
	"github.com/matrix-recorder/matrix-recorder/call/onetoone"
)

// newBackends creates the call backends: the one that answers legacy 1:1 calls, and those
// this bot offers on !start (the LiveKit one also answers direct MatrixRTC calls). Each
// backend package adds its constructor here.
func (b *Bot) newBackends() ([]call.Backend, error) {
	b.o2o = onetoone.New(onetoone.Config{
		UserID: b.client.UserID, DeviceID: b.client.DeviceID,
		MaxDuration: b.cfg.Calls.MaxDuration.D(), ICETimeout: b.cfg.Calls.ICETimeout.D(), MaxTracks: b.cfg.Calls.MaxTracks,
		OnRing: b.answerDirect, // livekit_dm.go
	}, botMatrix{b}, b.rtc, b.rec, b.log)
	out := []call.Backend{b.o2o}
	out = append(out, mesh.New(mesh.Config{CommandPrefix: b.cfg.Bot.CommandPrefix, MaxDuration: b.cfg.Calls.MaxDuration.D(), ICETimeout: b.cfg.Calls.ICETimeout.D()}, botMatrix{b}, b.rtc, b.rec, b.log))
	lkb := livekit.New(botMatrix{b}, b.rec, livekit.Options{
		OnCallBegan: b.onCallBegan, OnRing: b.onRing, Trust: b.liveKitTrust(), CommandPrefix: b.cfg.Bot.CommandPrefix,
	}, b.log)
	out = append(out, lkb)
	b.lk = lkb
	eg, err := b.newEgressBackend(lkb) // egress_backend.go
	if err != nil {
		return nil, err
	}
	if eg != nil {
		out = append(out, eg)
	}
	return out, nil
}

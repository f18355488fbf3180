package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-recorder/matrix-recorder/call/rooms"
	"github.com/matrix-recorder/matrix-recorder/recorder"
	"github.com/matrix-recorder/matrix-recorder/roomerr"
)

// autorecordType is the bot's room account data holding the room's autorecord setting, so
// it survives restarts without a database.
const autorecordType = "org.matrix-recorder.autorecord"

// autorecordSetting is a room's autorecord choice.
type autorecordSetting struct {
	Enabled bool      `json:"enabled"`
	By      id.UserID `json:"by,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

func (b *Bot) autorecordSetting(ctx context.Context, room id.RoomID) (autorecordSetting, error) {
	var s autorecordSetting
	err := b.client.GetRoomAccountData(ctx, room, autorecordType, &s)
	if errors.Is(err, mautrix.MNotFound) {
		return autorecordSetting{}, nil
	}
	return s, err
}

// autorecordCommand: "!autorecord on|off" sets whether an Element Call call that begins in
// the room is recorded without !start; without an argument it says what is set.
func (b *Bot) autorecordCommand(ctx context.Context, cc *cmdContext) error {
	p := b.cfg.Bot.CommandPrefix
	if len(cc.Args) == 0 {
		s, err := b.autorecordSetting(ctx, cc.Room)
		if err != nil {
			return fmt.Errorf("read the autorecord setting: %w", err)
		}
		if s.Enabled {
			b.notice(ctx, cc.Room, fmt.Sprintf("Autorecord is on (set by %s): calls that begin here are recorded. Type %sautorecord off to stop that.", s.By, p), cc.Event)
		} else {
			b.notice(ctx, cc.Room, fmt.Sprintf("Autorecord is off. Type %sautorecord on to record every call that begins here.", p), cc.Event)
		}
		return nil
	}
	var on bool
	switch strings.ToLower(cc.Args[0]) {
	case "on":
		on = true
	case "off":
	default:
		return userError{Msg: fmt.Sprintf("Usage: %sautorecord on|off", p)}
	}
	if err := b.mayRecord(ctx, cc.Room, cc.Sender, "start or stop recordings"); err != nil {
		return err
	}
	s := autorecordSetting{Enabled: on, By: cc.Sender, At: time.Now().UTC()}
	if err := b.client.SetRoomAccountData(ctx, cc.Room, autorecordType, s); err != nil {
		return fmt.Errorf("save the autorecord setting: %w", err)
	}
	if on {
		b.notice(ctx, cc.Room, fmt.Sprintf("Autorecord is on: I record every Element Call call that begins in this room (everyone in it is told; %sskipme opts out). Type %sstop to end a recording, %sautorecord off to stop recording calls automatically.", p, p, p), cc.Event)
	} else {
		b.notice(ctx, cc.Room, "Autorecord is off.", cc.Event)
	}
	return nil
}

// onCallBegan starts recording a call that began in a room with autorecord on, as if the
// user who turned autorecord on had typed !start (their permission is checked again). In a
// direct room the bot answers the call instead (livekit_dm.go).
func (b *Bot) onCallBegan(ctx context.Context, room id.RoomID) {
	if b.directCallBegan(ctx, room) {
		return
	}
	log := b.log.With().Stringer("room_id", room).Logger()
	// On a shared database the instance that wins the room records it (fleet.go).
	if ok, err := b.lc.ClaimRoom(ctx, room, recorder.KindMesh); err != nil || !ok {
		if err != nil {
			log.Error().Err(err).Msg("Could not take the room's lease; leaving the call to the other instances")
		}
		return
	}
	// Kept when nothing is recorded after all (a refusal): the lifecycle gives it back
	// after a while, so the instances that try later do not answer the call again.
	s, err := b.autorecordSetting(ctx, room)
	if err != nil {
		log.Warn().Err(err).Msg("Could not read the autorecord setting")
		return
	}
	if !s.Enabled {
		return
	}
	log.Info().Stringer("enabled_by", s.By).Msg("A call began in a room with autorecord on; recording it")
	err = b.rooms.Start(ctx, rooms.Request{Room: room, Sender: s.By})
	var ue userError
	switch {
	case errors.As(err, &ue):
		if !strings.HasPrefix(ue.Msg, "Already recording") {
			b.notice(ctx, room, "Autorecord: "+ue.Msg, "")
		}
	case err != nil:
		b.notice(ctx, room, "Autorecord could not start recording this call: "+roomerr.Clause(log, err, "Autorecord could not start the recording")+".", "")
	}
}

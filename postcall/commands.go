package postcall

import (
	"context"
	"fmt"
	"strings"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/postcall/export"
	"github.com/matrix-recorder/matrix-recorder/postcall/transcript"
	"github.com/matrix-recorder/matrix-recorder/usererr"
)

// ConfigFrom is the after-call work's configuration from the config file's postcall
// section; prefix is bot.command_prefix.
func ConfigFrom(pc config.PostCall, prefix string) (Config, error) {
	var auto []export.Kind
	for _, k := range pc.Export.Auto {
		kind, ok := export.ParseKind(k)
		if !ok {
			return Config{}, fmt.Errorf("postcall.export.auto: unknown kind %q", k)
		}
		auto = append(auto, kind)
	}
	return Config{
		FFmpeg:         pc.FFmpeg,
		Workers:        pc.Workers,
		MaxQueue:       pc.MaxQueue,
		Picture:        pc.Picture.Enabled,
		PictureWidth:   pc.Picture.Width,
		VoiceActivity:  pc.Picture.VoiceActivity,
		AutoExport:     auto,
		MixFormat:      pc.Export.MixFormat,
		ExportTimeout:  pc.Export.Timeout.D(),
		UploadMaxBytes: int64(pc.Export.UploadMaxMB) << 20,
		Transcript: transcript.Hook{
			Command: pc.Transcript.Command, URL: pc.Transcript.URL, Headers: pc.Transcript.Headers,
			Timeout: pc.Transcript.Timeout.D(), Concurrency: pc.Transcript.Concurrency,
		},
		CommandPrefix: prefix,
	}, nil
}

// ExportCommand runs "!export <id|latest> [mix|zip|flac|wav ...]" in a room (the caller
// checked that the sender may): without arguments it explains itself and lists the room's
// recent recordings. Mistakes are usererr.Errors.
func (m *Manager) ExportCommand(ctx context.Context, roomID string, args []string) error {
	if len(args) == 0 {
		calls, _ := RecentCalls(m.cfg.RecordingsDir, roomID, 5)
		msg := fmt.Sprintf("Usage: %sexport <id|latest> [mix|zip|flac|wav]. mix: all audio in one file; zip: every track aligned to the call's start, in one archive; flac/wav: one aligned file per person and track. Default: mix.", m.cfg.CommandPrefix)
		if len(calls) > 0 {
			msg += "\nRecent recordings here: " + strings.Join(Recent(calls, 5), ", ")
		}
		return usererr.Error{Msg: msg}
	}
	var kinds []export.Kind
	seen := map[export.Kind]bool{}
	for _, a := range args[1:] {
		k, ok := export.ParseKind(a)
		if !ok {
			return usererr.Error{Msg: fmt.Sprintf("I can export mix, zip, flac or wav, not %q.", a)}
		}
		if !seen[k] {
			seen[k] = true
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		kinds = []export.Kind{export.KindMix}
	}
	call, err := m.findCall(ctx, roomID, args[0])
	if err != nil {
		return err
	}
	if err := m.Export(roomID, call, kinds); err != nil {
		return usererr.Error{Msg: fmt.Sprintf("I cannot start that export now: %v.", err)}
	}
	return nil
}

// TranscriptCommand runs "!transcript [id|latest]": the hook for tracks without a
// transcript, then the merge of what there is.
func (m *Manager) TranscriptCommand(ctx context.Context, roomID string, args []string) error {
	ref := Latest
	if len(args) > 0 {
		ref = args[0]
	}
	call, err := m.findCall(ctx, roomID, ref)
	if err != nil {
		return err
	}
	if err := m.Transcribe(roomID, call); err != nil {
		return usererr.Error{Msg: fmt.Sprintf("I cannot start that now: %v.", err)}
	}
	return nil
}

// findCall resolves a recording reference of a room: latest, a call folder's name, a call
// id, or a recording id (Config.FolderOf).
func (m *Manager) findCall(ctx context.Context, roomID, ref string) (Call, error) {
	if !strings.EqualFold(ref, Latest) && m.cfg.FolderOf != nil {
		if folder := m.cfg.FolderOf(ctx, roomID, ref); folder != "" {
			ref = folder
		}
	}
	return FindCall(m.cfg.RecordingsDir, roomID, ref)
}

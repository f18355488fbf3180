package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// PostCall configures what happens after a call: the summary picture, exports and the
// transcription hook. All of it runs on finished recordings only.
type PostCall struct {
	// FFmpeg is the ffmpeg command: a path, or a name looked up in PATH when needed
	// (installing ffmpeg later needs no restart). Exports need it; the picture uses it
	// for voice activity when present.
	FFmpeg string `yaml:"ffmpeg"`
	// Workers run exports at once; MaxQueue more may wait.
	Workers    int                `yaml:"workers"`
	MaxQueue   int                `yaml:"max_queue"`
	Picture    PostCallPicture    `yaml:"picture"`
	Export     PostCallExport     `yaml:"export"`
	Transcript PostCallTranscript `yaml:"transcript"`
}

// PostCallPicture configures the summary picture.
type PostCallPicture struct {
	Enabled bool `yaml:"enabled"`
	// Width in pixels (480 to 4096).
	Width int `yaml:"width"`
	// VoiceActivity is auto (decoded levels with ffmpeg, else Opus packet sizes) or packets.
	VoiceActivity string `yaml:"voice_activity"`
}

// PostCallExport configures exports.
type PostCallExport struct {
	// Auto lists the exports made after every call: mix, zip, flac, wav.
	Auto []string `yaml:"auto"`
	// MixFormat is opus or flac.
	MixFormat string `yaml:"mix_format"`
	// Timeout bounds one export job.
	Timeout Duration `yaml:"timeout"`
	// UploadMaxMB: exported media files up to this size are also posted in the room
	// (0: never).
	UploadMaxMB int `yaml:"upload_max_mb"`
}

// PostCallTranscript configures the transcription hook.
type PostCallTranscript struct {
	// Command runs once per finished audio track: an argv with placeholders {file},
	// {user}, {device}, {offset_ms}, {track}, {vtt}, {folder}, {call_id}, {room_id}, {name}.
	Command []string `yaml:"command"`
	// URL receives each audio track as a multipart POST.
	URL string `yaml:"url"`
	// Headers are added to every request to URL (e.g. Authorization).
	Headers map[string]string `yaml:"headers" secret:"true"`
	// Concurrency bounds tracks transcribed at once; Timeout bounds each.
	Concurrency int      `yaml:"concurrency"`
	Timeout     Duration `yaml:"timeout"`
}

func defaultPostCall() PostCall {
	return PostCall{
		Workers:  1,
		MaxQueue: 16,
		Picture:  PostCallPicture{Enabled: true, Width: 1080, VoiceActivity: "auto"},
		Export:   PostCallExport{Auto: []string{}, MixFormat: "opus", Timeout: Duration(2 * time.Hour), UploadMaxMB: 25},
		Transcript: PostCallTranscript{
			Command: []string{}, Headers: map[string]string{}, Concurrency: 2, Timeout: Duration(30 * time.Minute),
		},
	}
}

func (p PostCall) validate() []error {
	var errs []error
	if p.Workers < 1 || p.Workers > 16 {
		errs = append(errs, fmt.Errorf("postcall.workers %d must be between 1 and 16", p.Workers))
	}
	if p.MaxQueue < 1 || p.MaxQueue > 1000 {
		errs = append(errs, fmt.Errorf("postcall.max_queue %d must be between 1 and 1000", p.MaxQueue))
	}
	if w := p.Picture.Width; w < 480 || w > 4096 {
		errs = append(errs, fmt.Errorf("postcall.picture.width %d must be between 480 and 4096", w))
	}
	switch p.Picture.VoiceActivity {
	case "auto", "packets":
	default:
		errs = append(errs, fmt.Errorf("postcall.picture.voice_activity %q must be auto or packets", p.Picture.VoiceActivity))
	}
	for _, k := range p.Export.Auto {
		switch k {
		case "mix", "zip", "flac", "wav":
		default:
			errs = append(errs, fmt.Errorf("postcall.export.auto: %q must be mix, zip, flac or wav", k))
		}
	}
	switch p.Export.MixFormat {
	case "opus", "flac":
	default:
		errs = append(errs, fmt.Errorf("postcall.export.mix_format %q must be opus or flac", p.Export.MixFormat))
	}
	if p.Export.Timeout.D() < time.Minute {
		errs = append(errs, errors.New("postcall.export.timeout must be at least 1m"))
	}
	if p.Export.UploadMaxMB < 0 || p.Export.UploadMaxMB > 4096 {
		errs = append(errs, fmt.Errorf("postcall.export.upload_max_mb %d must be between 0 and 4096", p.Export.UploadMaxMB))
	}
	t := p.Transcript
	if len(t.Command) > 0 && strings.TrimSpace(t.Command[0]) == "" {
		errs = append(errs, errors.New("postcall.transcript.command: the first element must be the program"))
	}
	if t.URL != "" {
		if u, err := url.Parse(t.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("postcall.transcript.url %q must be an http(s) URL", t.URL))
		}
	}
	for k := range t.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			errs = append(errs, fmt.Errorf("postcall.transcript.headers: %q is not a header name", k))
		}
	}
	if t.Concurrency < 1 || t.Concurrency > 64 {
		errs = append(errs, fmt.Errorf("postcall.transcript.concurrency %d must be between 1 and 64", t.Concurrency))
	}
	if t.Timeout.D() < time.Second {
		errs = append(errs, errors.New("postcall.transcript.timeout must be at least 1s"))
	}
	return errs
}

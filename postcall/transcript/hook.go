// Package transcript hands each finished audio track of a call to a transcription hook (a
// command, or an HTTP endpoint) with the track's speaker and offset, and merges the WebVTT
// files that come back into one speaker-labelled transcript on the call's timeline.
package transcript

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/matrix-recorder/matrix-recorder/recorder/codec"
)

// Track is one audio file handed to the hook.
type Track struct {
	// File is the audio file's absolute path.
	File string
	// Track is the logical track id; OffsetMs is where the file starts on the call's
	// timeline.
	Track       string
	UserID      string
	DeviceID    string
	DisplayName string
	OffsetMs    int64
	CallID      string
	RoomID      string
	// Folder is the call folder.
	Folder string
}

// VTTPath is where the hook's WebVTT for a file goes: next to it, "<file>.vtt" without
// the audio extension.
func VTTPath(audioFile string) string {
	return strings.TrimSuffix(audioFile, filepath.Ext(audioFile)) + ".vtt"
}

// Hook runs the configured transcription hook.
type Hook struct {
	// Command is an argv with placeholders (see Expand); empty means none.
	Command []string
	// URL receives each file as a multipart POST; empty means none.
	URL string
	// Headers are added to every request (authorization).
	Headers map[string]string
	// Timeout bounds one run per track.
	Timeout time.Duration
	// Concurrency bounds how many tracks are transcribed at once.
	Concurrency int
	// Client is the HTTP client (nil: a default one).
	Client *http.Client
}

// Enabled reports whether a command or a URL is configured.
func (h Hook) Enabled() bool { return len(h.Command) > 0 || h.URL != "" }

// Outcome is what happened to one track.
type Outcome struct {
	Track Track
	// VTT is the WebVTT file the hook left, "" if none (an endpoint may deliver later).
	VTT string
	Err error
}

// maxOutput bounds what is read back from a hook (stdout, an HTTP response).
const maxOutput = 32 << 20

// Run calls the hook once per track, Concurrency at a time, and returns one outcome per
// track in the order given. A failing hook fails only its track.
func (h Hook) Run(ctx context.Context, tracks []Track) []Outcome {
	out := make([]Outcome, len(tracks))
	n := max(h.Concurrency, 1)
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, t := range tracks {
		out[i].Track = t
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				out[i].Err = ctx.Err()
				return
			}
			defer func() { <-sem }()
			out[i].VTT, out[i].Err = h.runOne(ctx, t)
		}()
	}
	wg.Wait()
	return out
}

func (h Hook) runOne(ctx context.Context, t Track) (string, error) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	vtt := VTTPath(t.File)
	var err error
	if len(h.Command) > 0 {
		err = h.runCommand(ctx, t, vtt)
	}
	if err == nil && h.URL != "" {
		err = h.post(ctx, t, vtt)
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		return "", err
	}
	if fi, serr := os.Stat(vtt); serr == nil && fi.Mode().IsRegular() {
		return vtt, nil
	}
	return "", nil
}

// Placeholders replaced in every argument of the command.
var placeholders = []string{"{file}", "{user}", "{device}", "{offset_ms}", "{track}", "{vtt}", "{folder}", "{call_id}", "{room_id}", "{name}"}

// Expand replaces the placeholders in one argument: {file} (the audio file), {user},
// {device}, {offset_ms}, {track}, {vtt} (where the WebVTT should go), {folder},
// {call_id}, {room_id}, {name} (display name). Values are passed as whole arguments,
// never through a shell.
func Expand(arg string, t Track, vtt string) string {
	vals := t.values(vtt)
	pairs := make([]string, 0, 2*len(placeholders))
	for i, p := range placeholders {
		pairs = append(pairs, p, vals[i])
	}
	return strings.NewReplacer(pairs...).Replace(arg)
}

func (t Track) values(vtt string) []string {
	return []string{t.File, t.UserID, t.DeviceID, strconv.FormatInt(t.OffsetMs, 10), t.Track, vtt, t.Folder, t.CallID, t.RoomID, t.DisplayName}
}

// env is the same information as environment variables.
func (t Track) env(vtt string) []string {
	names := []string{"FILE", "USER_ID", "DEVICE_ID", "OFFSET_MS", "TRACK", "VTT", "FOLDER", "CALL_ID", "ROOM_ID", "DISPLAY_NAME"}
	vals := t.values(vtt)
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "MATRIX_RECORDER_" + n + "=" + strings.ReplaceAll(vals[i], "\x00", "")
	}
	return out
}

// inheritedEnv is the recorder's environment as the hook gets it: without the
// MATRIX_RECORDER_* variables, which can carry the recorder's secrets (every config key,
// passwords and tokens included, may come from the environment). The hook's own
// MATRIX_RECORDER_* values are added after this.
func inheritedEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MATRIX_RECORDER_") {
			out = append(out, kv)
		}
	}
	return out
}

func (h Hook) runCommand(ctx context.Context, t Track, vtt string) error {
	args := make([]string, len(h.Command))
	for i, a := range h.Command {
		args[i] = Expand(a, t, vtt)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(inheritedEnv(os.Environ()), t.env(vtt)...)
	cmd.Dir = t.Folder
	cmd.WaitDelay = 5 * time.Second
	ownProcessGroup(cmd)
	var stdout limited
	stdout.max = maxOutput
	stderr := limited{max: 8 << 10, keepTail: true}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w%s", filepath.Base(args[0]), err, stderr.suffix())
	}
	if _, err := os.Stat(vtt); err == nil {
		return nil
	}
	if isVTT(stdout.b.Bytes()) {
		return writeFile(vtt, stdout.b.Bytes())
	}
	return nil
}

// post sends the file to the URL as multipart/form-data with the metadata as form fields
// and X-Matrix-Recorder-* headers. A WebVTT response is saved.
func (h Hook) post(ctx context.Context, t Track, vtt string) error {
	f, err := os.Open(t.File)
	if err != nil {
		return fmt.Errorf("open %s: %w", filepath.Base(t.File), err)
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	fields := [][2]string{{"user_id", t.UserID}, {"device_id", t.DeviceID}, {"offset_ms", strconv.FormatInt(t.OffsetMs, 10)},
		{"track", t.Track}, {"call_id", t.CallID}, {"room_id", t.RoomID}, {"display_name", t.DisplayName}}
	go func() {
		err := func() error {
			for _, kv := range fields {
				if err := mw.WriteField(kv[0], kv[1]); err != nil {
					return err
				}
			}
			hdr := textproto.MIMEHeader{}
			hdr.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, filepath.Base(t.File)))
			hdr.Set("Content-Type", codec.ContentType(t.File))
			part, err := mw.CreatePart(hdr)
			if err != nil {
				return err
			}
			if _, err := io.Copy(part, f); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, pr)
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("transcript url: %w", err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-Matrix-Recorder-User-Id", headerValue(t.UserID))
	req.Header.Set("X-Matrix-Recorder-Device-Id", headerValue(t.DeviceID))
	req.Header.Set("X-Matrix-Recorder-Offset-Ms", strconv.FormatInt(t.OffsetMs, 10))
	req.Header.Set("X-Matrix-Recorder-Track", headerValue(t.Track))
	req.Header.Set("X-Matrix-Recorder-Call-Id", headerValue(t.CallID))
	req.Header.Set("X-Matrix-Recorder-Room-Id", headerValue(t.RoomID))
	for k, v := range h.Headers {
		req.Header.Set(k, v)
	}
	client := h.Client
	if client == nil {
		client = &http.Client{}
	}
	resp, err := client.Do(req)
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("post to the transcript url: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOutput))
	if err != nil {
		return fmt.Errorf("read the transcript url's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("transcript url answered %s: %s", resp.Status, oneLine(string(body), 200))
	}
	if isVTT(body) {
		return writeFile(vtt, body)
	}
	return nil
}

// headerValue keeps a header value to printable ASCII.
func headerValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

func isVTT(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\ufeff"))
	return bytes.HasPrefix(b, []byte("WEBVTT"))
}

func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// oneLine shortens s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}

// limited is a writer that keeps at most max bytes: the first ones, or with keepTail the
// last ones.
type limited struct {
	b        bytes.Buffer
	max      int
	keepTail bool
}

func (l *limited) Write(p []byte) (int, error) {
	n := len(p)
	if l.keepTail {
		l.b.Write(p)
		if l.b.Len() > l.max {
			rest := append([]byte(nil), l.b.Bytes()[l.b.Len()-l.max:]...)
			l.b.Reset()
			l.b.Write(rest)
		}
		return n, nil
	}
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return n, nil
}

// suffix is ": <last line of stderr>" or "".
func (l *limited) suffix() string {
	lines := strings.Split(strings.TrimSpace(string(bytes.ToValidUTF8(l.b.Bytes(), []byte("?")))), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if last == "" {
		return ""
	}
	return ": " + oneLine(last, 200)
}

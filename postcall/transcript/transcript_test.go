package transcript

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func tracks(t *testing.T, dir string) []Track {
	t.Helper()
	var out []Track
	for i, tr := range []struct {
		file, user, dev string
		off             int64
	}{{"alice-A-audio.ogg", "@alice:example.org", "A", 1200}, {"bob-B-audio.ogg", "@bob:example.org", "B", 0}, {"bob-B-audio.part2.ogg", "@bob:example.org", "B", 65432}} {
		path := filepath.Join(dir, tr.file)
		if err := os.WriteFile(path, []byte("OggS fake audio "+tr.file), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, Track{File: path, Track: strings.TrimSuffix(tr.file, ".ogg"), UserID: tr.user, DeviceID: tr.dev, OffsetMs: tr.off,
			CallID: "call1", RoomID: "!room:example.org", Folder: dir, DisplayName: []string{"Alice", "Bob", "Bob"}[i]})
	}
	return out
}

// TestCommandOncePerTrack: the command runs once per track with its file, speaker and
// offset, and the WebVTT it writes is found.
func TestCommandOncePerTrack(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "calls.log")
	cmd := script(t, dir, "hook.sh", `echo "$1|$2|$3|$4|$MATRIX_RECORDER_OFFSET_MS" >> `+log+`
printf 'WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nhello from %s\n' "$2" > "$5"
`)
	h := Hook{Command: []string{cmd, "{file}", "{user}", "{device}", "{offset_ms}", "{vtt}"}, Concurrency: 2, Timeout: time.Minute}
	ts := tracks(t, dir)
	outs := h.Run(context.Background(), ts)
	for i, o := range outs {
		if o.Err != nil {
			t.Fatalf("track %d: %v", i, o.Err)
		}
		if o.VTT != VTTPath(ts[i].File) {
			t.Errorf("track %d: vtt %q", i, o.VTT)
		}
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	sort.Strings(lines)
	want := []string{
		filepath.Join(dir, "alice-A-audio.ogg") + "|@alice:example.org|A|1200|1200",
		filepath.Join(dir, "bob-B-audio.ogg") + "|@bob:example.org|B|0|0",
		filepath.Join(dir, "bob-B-audio.part2.ogg") + "|@bob:example.org|B|65432|65432",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestCommandStdoutAndFailures(t *testing.T) {
	dir := t.TempDir()
	ts := tracks(t, dir)[:1]
	// WebVTT on stdout is saved when the command writes no file.
	stdout := script(t, dir, "stdout.sh", "printf 'WEBVTT\\n\\n00:01.000 --> 00:02.000\\nhi\\n'\n")
	o := Hook{Command: []string{stdout}}.Run(context.Background(), ts)[0]
	if o.Err != nil || o.VTT == "" {
		t.Fatalf("stdout hook: %+v", o)
	}
	_ = os.Remove(o.VTT)
	// A failing command is reported with its exit status and last error line.
	fail := script(t, dir, "fail.sh", "echo starting >&2\necho 'model not found' >&2\nexit 3\n")
	o = Hook{Command: []string{fail}}.Run(context.Background(), ts)[0]
	if o.Err == nil || !strings.Contains(o.Err.Error(), "exit status 3") || !strings.Contains(o.Err.Error(), "model not found") || o.VTT != "" {
		t.Errorf("failing hook: %+v", o)
	}
	// A hanging command is stopped at the timeout.
	hang := script(t, dir, "hang.sh", "sleep 30\n")
	start := time.Now()
	o = Hook{Command: []string{hang}, Timeout: 300 * time.Millisecond}.Run(context.Background(), ts)[0]
	if o.Err == nil || !strings.Contains(o.Err.Error(), "timed out") || time.Since(start) > 15*time.Second {
		t.Errorf("hanging hook: %+v after %v", o, time.Since(start))
	}
	// A command that does not exist.
	o = Hook{Command: []string{filepath.Join(dir, "nope")}}.Run(context.Background(), ts)[0]
	if o.Err == nil {
		t.Error("missing command succeeded")
	}
}

func TestURLHook(t *testing.T) {
	dir := t.TempDir()
	ts := tracks(t, dir)
	var mu sync.Mutex
	got := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f, hdr, err := r.FormFile("file")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(f)
		mu.Lock()
		got[hdr.Filename] = r.FormValue("user_id") + "|" + r.FormValue("offset_ms") + "|" + r.Header.Get("X-Matrix-Recorder-Offset-Ms") + "|" + string(body)
		mu.Unlock()
		if r.FormValue("device_id") == "A" {
			w.Header().Set("Content-Type", "text/vtt")
			_, _ = io.WriteString(w, "WEBVTT\n\n00:00:00.500 --> 00:00:01.000\nfrom the service\n")
			return
		}
		w.WriteHeader(http.StatusAccepted) // results come later
	}))
	defer srv.Close()
	outs := Hook{URL: srv.URL, Headers: map[string]string{"Authorization": "Bearer s3cret"}, Concurrency: 3}.Run(context.Background(), ts)
	for i, o := range outs {
		if o.Err != nil {
			t.Fatalf("track %d: %v", i, o.Err)
		}
	}
	if outs[0].VTT == "" || outs[1].VTT != "" {
		t.Errorf("vtt files: %q %q", outs[0].VTT, outs[1].VTT)
	}
	if g := got["alice-A-audio.ogg"]; g != "@alice:example.org|1200|1200|OggS fake audio alice-A-audio.ogg" {
		t.Errorf("service got %q", g)
	}
	if len(got) != 3 {
		t.Errorf("service called for %d tracks", len(got))
	}
	o := Hook{URL: srv.URL}.Run(context.Background(), ts[:1])[0]
	if o.Err == nil || !strings.Contains(o.Err.Error(), "401") {
		t.Errorf("unauthorized: %v", o.Err)
	}
}

func TestParseAndMerge(t *testing.T) {
	alice := "\ufeffWEBVTT Kind: captions\n\nNOTE a note\n\n1\n00:00:01.000 --> 00:00:02.000 align:start\n<v Speaker 0>Hello</v>\nthere\n\n00:03.5 --> 00:04.000\n→ next\n\nbroken --> cue\nskipped\n\n00:00:09,000 --> 00:00:08,000\nbackwards\n"
	bob := "WEBVTT\n\n00:00:00.500 --> 00:00:01.200\nHi <b>Alice</b> & co\n"
	ca, err := ParseVTT(strings.NewReader(alice))
	if err != nil {
		t.Fatal(err)
	}
	if len(ca) != 2 || ca[0].Text != "Hello\nthere" || ca[0].Speaker != "Speaker 0" || ca[1].Start != 3500*time.Millisecond {
		t.Fatalf("alice cues %+v", ca)
	}
	cb, err := ParseVTT(strings.NewReader(bob))
	if err != nil {
		t.Fatal(err)
	}
	merged := Merge([]Source{{Cues: ca, Speaker: "Alice <a@x>", Offset: 1200 * time.Millisecond}, {Cues: cb, Speaker: "Bob", Offset: 2500 * time.Millisecond}})
	var starts []time.Duration
	for _, c := range merged {
		starts = append(starts, c.Start)
	}
	want := []time.Duration{2200 * time.Millisecond, 3000 * time.Millisecond, 4700 * time.Millisecond}
	if len(starts) != 3 || starts[0] != want[0] || starts[1] != want[1] || starts[2] != want[2] {
		t.Fatalf("merged starts %v, want %v", starts, want)
	}
	out := string(WriteVTT(merged, "Call"))
	for _, s := range []string{"WEBVTT - Call\n", "00:00:02.200 --> 00:00:03.200\n<v Alice &lt;a@x>Hello\nthere\n", "00:00:03.000 --> 00:00:03.700\n<v Bob>Hi <b>Alice</b> & co\n"} {
		if !strings.Contains(out, s) {
			t.Errorf("merged vtt lacks %q:\n%s", s, out)
		}
	}
	// What we write parses back.
	back, err := ParseVTT(strings.NewReader(out))
	if err != nil || len(back) != 3 || back[1].Speaker != "Bob" {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	if p := PlainText(merged, 2); len(p) != 2 || p[0] != "[0:02] Alice <a@x>: Hello there" || p[1] != "[0:03] Bob: Hi Alice & co" {
		t.Errorf("plain text %q", p)
	}
	if _, err := ParseVTT(strings.NewReader("1\n00:00:01,000 --> 00:00:02,000\nsrt\n")); err != ErrNotVTT {
		t.Errorf("srt accepted: %v", err)
	}
}

func FuzzParseVTT(f *testing.F) {
	f.Add("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v A>x\n")
	f.Fuzz(func(t *testing.T, s string) {
		cues, err := ParseVTT(strings.NewReader(s))
		if err != nil {
			return
		}
		out := WriteVTT(Merge([]Source{{Cues: cues, Speaker: "x"}}), "t")
		if _, err := ParseVTT(strings.NewReader(string(out))); err != nil {
			t.Fatalf("our own output does not parse: %v", err)
		}
	})
}

// TestCommandGetsNoRecorderSecrets: every config key, passwords and tokens included, may
// come from MATRIX_RECORDER_* variables; the hook is someone else's program and gets none
// of them, only its own MATRIX_RECORDER_* values (and the rest of the environment).
func TestCommandGetsNoRecorderSecrets(t *testing.T) {
	t.Setenv("MATRIX_RECORDER_MATRIX_PASSWORD", "hunter2")
	t.Setenv("MATRIX_RECORDER_TEST_OTHER", "kept-away")
	t.Setenv("HOOK_VISIBLE", "yes")
	dir := t.TempDir()
	log := filepath.Join(dir, "env.log")
	cmd := script(t, dir, "hook.sh", `env > `+log+`
printf 'WEBVTT\n' > "$1"
`)
	h := Hook{Command: []string{cmd, "{vtt}"}, Concurrency: 1, Timeout: time.Minute}
	ts := tracks(t, dir)[:1]
	if outs := h.Run(context.Background(), ts); outs[0].Err != nil {
		t.Fatal(outs[0].Err)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	env := string(data)
	for _, leak := range []string{"hunter2", "kept-away"} {
		if strings.Contains(env, leak) {
			t.Errorf("the hook saw the recorder's %q:\n%s", leak, env)
		}
	}
	for _, want := range []string{"HOOK_VISIBLE=yes", "MATRIX_RECORDER_USER_ID=@alice:example.org", "MATRIX_RECORDER_OFFSET_MS=1200"} {
		if !strings.Contains(env, want) {
			t.Errorf("the hook's environment lacks %s:\n%s", want, env)
		}
	}
}

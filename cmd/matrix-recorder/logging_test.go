package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/matrix-recorder/matrix-recorder/config"
)

// log.format: auto is the console format on a terminal and JSON otherwise; json and
// console are what they say wherever the log goes.
func TestLogFormat(t *testing.T) {
	for _, tc := range []struct {
		format   string
		terminal bool
		json     bool
	}{
		{config.LogAuto, true, false},
		{config.LogAuto, false, true},
		{config.LogJSON, true, true},
		{config.LogConsole, false, false},
	} {
		var buf bytes.Buffer
		log, err := newLogger(config.Log{Level: "info", Format: tc.format}, &buf, tc.terminal)
		if err != nil {
			t.Fatal(err)
		}
		log.Info().Str("component", "test").Msg("hello")
		var v map[string]any
		isJSON := json.Unmarshal(buf.Bytes(), &v) == nil
		if isJSON != tc.json || !strings.Contains(buf.String(), "hello") {
			t.Errorf("format %s on a terminal %v: %q (JSON %v, want %v)", tc.format, tc.terminal, buf.String(), isJSON, tc.json)
		}
	}
}

// A buffer and a pipe (a journal, docker logs) are not terminals.
func TestIsTerminal(t *testing.T) {
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(w) {
		t.Error("a pipe is a terminal")
	}
}

package roomerr

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// The room reads the id and not the error; the log has both.
func TestReport(t *testing.T) {
	var buf bytes.Buffer
	err := errors.New(`Put "http://10.0.0.7:9000/bucket/x": dial tcp: connection refused`)
	got := Report(zerolog.New(&buf), err, "Could not do it")
	var line struct {
		ID    string `json:"error_id"`
		Error string `json:"error"`
	}
	if e := json.Unmarshal(buf.Bytes(), &line); e != nil {
		t.Fatal(e)
	}
	if len(line.ID) != 6 || line.Error != err.Error() {
		t.Fatalf("log line: %s", buf.String())
	}
	if !strings.Contains(got, "error "+line.ID+")") || strings.Contains(got, "10.0.0.7") {
		t.Fatalf("sentence: %q", got)
	}
	if c := Clause(zerolog.Nop(), err, "x"); !strings.HasPrefix(c, "something went wrong (error ") || strings.Contains(c, "10.0.0.7") {
		t.Errorf("clause: %q", c)
	}
	if NewID() == NewID() && NewID() == NewID() {
		t.Error("ids repeat")
	}
}

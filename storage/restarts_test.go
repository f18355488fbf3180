package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Opt-outs, answered calls and name marks outlive the process: written, the database
// closed and opened again, read back.
func TestRestartStateSurvivesReopen(t *testing.T) { eachEngine(t, testRestartStateSurvivesReopen) }

func testRestartStateSurvivesReopen(t *testing.T, e engine) {
	d := e.open(t)
	ctx := context.Background()
	at := time.UnixMilli(1_700_000_000_000).UTC()
	if err := d.SetOptOut(ctx, "!r:x", "@a:x", at); err != nil {
		t.Fatal(err)
	}
	if err := d.SetOptOut(ctx, "!r:x", "@a:x", at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"@b:x", "@c:x"} {
		if err := d.SetOptOut(ctx, "!r:x", u, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.ClearOptOut(ctx, "!r:x", "@c:x"); err != nil {
		t.Fatal(err)
	}
	r := &Recording{RoomID: "!r:x", CallID: "c", Kind: "livekit", Folder: "f"}
	if err := d.CreateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := d.SetAnswer(ctx, Answer{RecordingID: r.ID, Caller: "@a:x", Intent: "audio"}); err != nil {
		t.Fatal(err)
	}
	for _, room := range []string{"!r:x", "!s:x", "!r:x"} {
		if err := d.SetNameMark(ctx, room, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.ClearNameMark(ctx, "!s:x"); err != nil {
		t.Fatal(err)
	}
	r.Status = RecordingPaused
	if err := d.UpdateRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = e.open(t)
	outs, err := d.OptOuts(ctx)
	if err != nil || len(outs) != 2 || outs[0].UserID != "@a:x" || !outs[0].Since.Equal(at) || outs[1].UserID != "@b:x" {
		t.Errorf("opt-outs after reopening: %+v %v", outs, err)
	}
	if a, err := d.AnswerOf(ctx, r.ID); err != nil || a.Caller != "@a:x" || a.Intent != "audio" {
		t.Errorf("answer: %+v %v", a, err)
	}
	if _, err := d.AnswerOf(ctx, "other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("answer of a recording nobody answered: %v", err)
	}
	if marks, err := d.NameMarks(ctx); err != nil || len(marks) != 1 || marks[0] != "!r:x" {
		t.Errorf("name marks: %v %v", marks, err)
	}
	// A paused recording is neither live (a start-up after a crash leaves it alone) nor
	// gone; its call is paused.
	if live, err := d.MarkInterrupted(ctx); err != nil || len(live) != 0 {
		t.Errorf("mark interrupted took %v %v", live, err)
	}
	if l, err := d.RecordingsWithStatus(ctx, RecordingPaused); err != nil || len(l) != 1 || l[0].Status.Live() || l[0].Status.Gone() {
		t.Errorf("paused: %+v %v", l, err)
	}
	var call string
	if err := d.db.QueryRow(ctx, `SELECT status FROM calls`).Scan(&call); err != nil || call != string(CallPaused) {
		t.Errorf("call %q %v", call, err)
	}
}

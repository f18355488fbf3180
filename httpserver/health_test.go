package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// The sync heartbeat: not ready before the first sync, ready after it, unhealthy once the
// last sync is older than the threshold, ready again after the next one.
func TestHeartbeatGoesStale(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	hb := NewHeartbeat("successful sync", 3*time.Minute, clock.now)
	ctx := context.Background()
	if err := hb.Check(ctx); err == nil || !strings.Contains(err.Error(), "no successful sync yet") {
		t.Errorf("before the first beat: %v", err)
	}
	hb.Beat()
	clock.t = clock.t.Add(3 * time.Minute)
	if err := hb.Check(ctx); err != nil {
		t.Errorf("3 minutes after a beat (the limit): %v", err)
	}
	clock.t = clock.t.Add(time.Second)
	err := hb.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "3m1s ago") {
		t.Errorf("past the limit: %v", err)
	}
	hb.Beat()
	if err := hb.Check(ctx); err != nil {
		t.Errorf("after a new beat: %v", err)
	}
}

// /healthz through the handler: 503 with the failed check named in the JSON body while the
// sync is stale, 200 when every check passes.
func TestHealthNamesTheFailedCheck(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	hb := NewHeartbeat("successful sync", time.Minute, clock.now)
	hb.Beat()
	h := Health(Check{Name: "sync", Run: hb.Check}, Check{Name: "database", Run: func(context.Context) error { return nil }},
		Check{Name: "recordings_dir", Run: func(context.Context) error { return errors.New("not writable") }})
	get := func() (int, HealthReport) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, HealthPath, nil))
		var rep HealthReport
		dec := json.NewDecoder(rec.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rep); err != nil {
			t.Fatal(err)
		}
		return rec.Code, rep
	}
	code, rep := get()
	if code != http.StatusServiceUnavailable || rep.Status != "unhealthy" || len(rep.Failed) != 1 || rep.Failed[0] != "recordings_dir" ||
		rep.Checks["sync"] != "ok" || rep.Checks["recordings_dir"] != "not writable" || !strings.Contains(rep.Error, "recordings_dir: not writable") {
		t.Errorf("got %d %+v", code, rep)
	}
	clock.t = clock.t.Add(2 * time.Minute)
	_, rep = get()
	if len(rep.Failed) != 2 || rep.Failed[0] != "sync" {
		t.Errorf("stale sync: %+v", rep)
	}
	ok := Health(Check{Name: "database", Run: func(context.Context) error { return nil }})
	rec := httptest.NewRecorder()
	ok.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, HealthPath, nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"status":"ok"`) {
		t.Errorf("healthy: %d %s", rec.Code, rec.Body.String())
	}
}

// In a fleet the report names the instance that answered; a single instance's report has
// no instance field at all (as before).
func TestHealthNamesTheInstance(t *testing.T) {
	ok := Check{Name: "database", Run: func(context.Context) error { return nil }}
	for _, c := range []struct{ instance, want string }{{"rec-a", `"instance":"rec-a"`}, {"", ""}} {
		rec := httptest.NewRecorder()
		HealthOf(c.instance, ok).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, HealthPath, nil))
		body := rec.Body.String()
		if c.want != "" && !strings.Contains(body, c.want) || c.want == "" && strings.Contains(body, "instance") {
			t.Errorf("instance %q: %s", c.instance, body)
		}
	}
}

package httpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// HealthPath is where Health is served.
const HealthPath = "/healthz"

// Check is one condition of readiness, with the name /healthz reports it under.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// HealthReport is /healthz's answer: Status "ok" or "unhealthy", every check's result
// ("ok" or what is wrong) and, when unhealthy, Error: the failed checks in one line.
type HealthReport struct {
	Status string `json:"status"`
	// Instance names the instance of a fleet that answered (empty: one instance).
	Instance string            `json:"instance,omitempty"`
	Error    string            `json:"error,omitempty"`
	Failed   []string          `json:"failed,omitempty"`
	Checks   map[string]string `json:"checks"`
}

// healthTimeout bounds all the checks of one request.
const healthTimeout = 5 * time.Second

// Health answers GET /healthz: 200 when every check passes, 503 otherwise, with a
// HealthReport that says which check failed and why.
func Health(checks ...Check) http.Handler { return HealthOf("", checks...) }

// HealthOf is Health for an instance of a fleet: the report names it.
func HealthOf(instance string, checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		rep := RunChecks(ctx, checks)
		rep.Instance = instance
		if rep.Status != "ok" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// RunChecks runs every check, one after the other.
func RunChecks(ctx context.Context, checks []Check) HealthReport {
	rep := HealthReport{Status: "ok", Checks: make(map[string]string, len(checks))}
	var failed []string
	for _, c := range checks {
		if err := c.Run(ctx); err != nil {
			rep.Checks[c.Name] = err.Error()
			rep.Failed = append(rep.Failed, c.Name)
			failed = append(failed, c.Name+": "+err.Error())
			continue
		}
		rep.Checks[c.Name] = "ok"
	}
	if len(failed) > 0 {
		rep.Status = "unhealthy"
		rep.Error = strings.Join(failed, "; ")
	}
	return rep
}

// Heartbeat follows a loop that should succeed regularly (the Matrix sync): it is healthy
// from the first Beat on, for as long as the last Beat is at most MaxAge old.
type Heartbeat struct {
	what   string
	maxAge time.Duration
	now    func() time.Time

	mu   sync.Mutex
	last time.Time
}

// NewHeartbeat follows what ("sync with the homeserver"); now is the clock (nil:
// time.Now).
func NewHeartbeat(what string, maxAge time.Duration, now func() time.Time) *Heartbeat {
	if now == nil {
		now = time.Now
	}
	return &Heartbeat{what: what, maxAge: maxAge, now: now}
}

// Beat records a success now.
func (h *Heartbeat) Beat() {
	t := h.now()
	h.mu.Lock()
	h.last = t
	h.mu.Unlock()
}

// Check fails before the first Beat and when the last one is older than MaxAge.
func (h *Heartbeat) Check(context.Context) error {
	h.mu.Lock()
	last := h.last
	h.mu.Unlock()
	if last.IsZero() {
		return fmt.Errorf("no %s yet", h.what)
	}
	if age := h.now().Sub(last); age > h.maxAge {
		return fmt.Errorf("the last %s was %s ago (more than %s)", h.what, age.Round(time.Second), h.maxAge)
	}
	return nil
}

package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-recorder/matrix-recorder/httpserver"
	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
)

// TestIntegrationHealthAndMetricsListeners: the real binary with http.listen and
// metrics.listen serves /metrics only on the metrics listener, /healthz on both; /healthz
// and the healthcheck command say not ready, naming the check, while the recordings
// folder is gone, and ready again once it is back; the stop leaves a clean JSON log.
func TestIntegrationHealthAndMetricsListeners(t *testing.T) {
	s := homeserver(t)
	cfg := botConfig(t, s)
	public, err := devtools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	private, err := devtools.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", public)
	cfg.Metrics.Listen = fmt.Sprintf(":%d", private) // every address: the healthcheck asks loopback
	pubURL, privURL := fmt.Sprintf("http://127.0.0.1:%d", public), fmt.Sprintf("http://127.0.0.1:%d", private)
	p := startProcess(t, cfg)
	configPath := writeConfig(t, cfg)

	if code, body := httpGet(t, privURL+"/metrics"); code != 200 || !strings.Contains(body, "matrix_recorder_build_info{") {
		t.Errorf("metrics listener /metrics: %d\n%.300s", code, body)
	}
	if code, _ := httpGet(t, pubURL+"/metrics"); code != http.StatusNotFound {
		t.Errorf("public listener /metrics: %d, want 404 (metrics.listen is set)", code)
	}
	for _, u := range []string{pubURL, privURL} {
		if code, body := httpGet(t, u+httpserver.HealthPath); code != 200 {
			t.Errorf("%s/healthz: %d %s", u, code, body)
		}
	}
	if code, out := healthcheck(t, configPath); code != 0 || strings.TrimSpace(out) != "ready" {
		t.Errorf("healthcheck of a ready bot: exit %d %q", code, out)
	}

	// The folder goes away (root ignores permissions; a missing folder stops it too).
	if err := os.RemoveAll(cfg.Recordings.Dir); err != nil {
		t.Fatal(err)
	}
	rep := waitHealth(t, privURL, http.StatusServiceUnavailable, func(r httpserver.HealthReport) bool { return r.Checks["recordings_dir"] != "ok" })
	if len(rep.Failed) != 1 || rep.Failed[0] != "recordings_dir" || !strings.Contains(rep.Checks["recordings_dir"], "recordings.dir is not writable") {
		t.Errorf("report with the folder gone: %+v", rep)
	}
	if code, out := healthcheck(t, configPath); code != 1 || !strings.Contains(out, "not ready: recordings_dir: recordings.dir is not writable") {
		t.Errorf("healthcheck with the folder gone: exit %d %q", code, out)
	}
	if err := os.Mkdir(cfg.Recordings.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, privURL, http.StatusOK, nil)

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("bot exited with %v after SIGTERM", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("bot did not exit after SIGTERM")
	}
	checkProcessLog(t, p.log.String())
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHealth asks /healthz until it answers code and a report that want accepts (nil:
// any; the folder probe runs at most every few seconds), and returns the report.
func waitHealth(t *testing.T, base string, code int, want func(httpserver.HealthReport) bool) httpserver.HealthReport {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, body := httpGet(t, base+httpserver.HealthPath)
		var rep httpserver.HealthReport
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("/healthz answered %d %q: %v", got, body, err)
		}
		if got == code && (want == nil || want(rep)) {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still answers %d %+v, want %d", got, rep, code)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// healthcheck runs `matrix-recorder healthcheck -c path` and returns its exit code and
// output.
func healthcheck(t *testing.T, path string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(buildBinary(t), "healthcheck", "-c", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("healthcheck: %v", err)
	return -1, ""
}

// checkProcessLog checks the bot's JSON log: every line an object without a key twice,
// and no "Request canceled" warnings from the stop.
func checkProcessLog(t *testing.T, log string) {
	t.Helper()
	lines := 0
	for _, line := range strings.Split(log, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		lines++
		if dups, err := duplicateKeys([]byte(line)); err != nil || len(dups) > 0 {
			t.Errorf("log line with keys twice %v (%v): %s", dups, err, line)
		}
		if strings.Contains(line, "Request canceled") {
			t.Errorf("cancelled requests logged at the stop: %s", line)
		}
	}
	if lines == 0 {
		t.Error("no JSON log lines")
	}
}

// duplicateKeys decodes one JSON value strictly and lists the keys an object has twice.
func duplicateKeys(data []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var dups []string
	var value func() error
	value = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if seen[key] {
					dups = append(dups, key)
				}
				seen[key] = true
				if err := value(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := value(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := value(); err != nil {
		return dups, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return dups, errors.New("more than one value")
	}
	return dups, nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/matrix-recorder/matrix-recorder/config"
	"github.com/matrix-recorder/matrix-recorder/httpserver"
)

const healthcheckUsage = `Usage:
  matrix-recorder healthcheck [-c config.yaml] [-timeout 5s]

Asks the running recorder's /healthz, on metrics.listen (or http.listen) from the config,
and says in one line whether it is ready. Exit code 0: ready; 1: not ready, not running,
or no listener configured (what Docker's HEALTHCHECK expects).
`

// runHealthcheck is the healthcheck command: Docker's HEALTHCHECK, a monitoring script.
func runHealthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("matrix-recorder healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	var path string
	fs.StringVar(&path, "config", "config.yaml", "")
	fs.StringVar(&path, "c", "config.yaml", "")
	timeout := fs.Duration("timeout", 5*time.Second, "")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, healthcheckUsage)
		return exitOK
	case err != nil:
		fmt.Fprint(stderr, "\n"+healthcheckUsage)
		return exitError
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "Unexpected argument %q.\n\n%s", fs.Arg(0), healthcheckUsage)
		return exitError
	}
	l, err := config.Load(path, config.Options{Environ: os.Environ()})
	if err != nil {
		first, _, _ := strings.Cut(err.Error(), "\n")
		fmt.Fprintf(stderr, "not ready: the config cannot be used: %s\n", strings.TrimSuffix(first, ":"))
		return exitError
	}
	url, err := healthURL(l.Config)
	if err != nil {
		fmt.Fprintf(stderr, "not ready: %v\n", err)
		return exitError
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rep, err := askHealth(ctx, url)
	if err != nil {
		fmt.Fprintf(stderr, "not ready: %v\n", err)
		return exitError
	}
	if rep.Status != "ok" {
		fmt.Fprintf(stdout, "not ready: %s\n", rep.Error)
		return exitError
	}
	fmt.Fprintln(stdout, "ready")
	return exitOK
}

// healthURL is where the recorder with this config serves /healthz: metrics.listen (the
// private listener) when set, else http.listen; a wildcard host is asked on loopback.
func healthURL(c config.Config) (string, error) {
	listen, key := c.Metrics.Listen, "metrics.listen"
	if listen == "" {
		listen, key = c.HTTP.Listen, "http.listen"
	}
	if listen == "" {
		return "", errors.New("neither metrics.listen nor http.listen is set: the recorder serves no /healthz to ask")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "0" {
		return "", fmt.Errorf("%s %q names no port to ask", key, listen)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + httpserver.HealthPath, nil
}

// askHealth gets the report; an answer that is not one is an error.
func askHealth(ctx context.Context, url string) (httpserver.HealthReport, error) {
	var rep httpserver.HealthReport
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return rep, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rep, fmt.Errorf("nothing answers at %s (is the recorder running?): %w", url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rep); err != nil || rep.Status == "" {
		return rep, fmt.Errorf("%s answered %s, not a health report", url, resp.Status)
	}
	if resp.StatusCode != http.StatusOK && rep.Status == "ok" {
		rep.Status, rep.Error = "unhealthy", resp.Status
	}
	return rep, nil
}

package devtools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// EnvCacheRoot names the environment variable that overrides the cache root.
const EnvCacheRoot = "MATRIX_RECORDER_TOOLS"

// markerName is written into a tool's folder only after a complete build.
const markerName = ".complete.json"

//go:embed modules
var modules embed.FS

// moduleFiles maps the embedded names to the names go expects.
func moduleFiles() [][2]string {
	return [][2]string{
		{"go.mod.txt", "go.mod"},
		{"go.sum.txt", "go.sum"},
		{"tools.go.txt", "tools.go"},
	}
}

type options struct {
	root   string
	logger *zerolog.Logger
	goBin  string
}

// Option changes how Ensure works.
type Option func(*options)

// WithCacheRoot sets the cache root instead of CacheRoot().
func WithCacheRoot(dir string) Option { return func(o *options) { o.root = dir } }

// WithLogger sets the logger for build progress. Without it Ensure uses the
// context's logger, or a console logger on stderr when the context has none.
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.logger = &l } }

// WithGo sets the go command to run (default: "go" from PATH).
func WithGo(path string) Option { return func(o *options) { o.goBin = path } }

// CacheRoot returns $MATRIX_RECORDER_TOOLS if set, else
// <user cache dir>/matrix-recorder/tools.
func CacheRoot() (string, error) {
	if dir := os.Getenv(EnvCacheRoot); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache dir for tool builds (set %s): %w", EnvCacheRoot, err)
	}
	return filepath.Join(base, "matrix-recorder", "tools"), nil
}

type marker struct {
	Tool         string    `json:"tool"`
	Version      string    `json:"version"`
	ModuleSHA256 string    `json:"module_sha256"`
	GoVersion    string    `json:"go_version"`
	BuiltAt      time.Time `json:"built_at"`
	BuildSeconds float64   `json:"build_seconds"`
}

// Ensure returns the folder holding tool's binaries, building them first
// unless a complete build of the same pinned module is cached. Concurrent
// callers (other processes included) wait for one build instead of racing.
// A tool whose pin names an AGPL module (AGPLModules) is refused before
// anything else, cached build or not.
func Ensure(ctx context.Context, tool Tool, opts ...Option) (string, error) {
	if err := CheckLicence(tool); err != nil {
		return "", err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	log := o.log(ctx).With().Str("tool", tool.Name).Str("version", tool.Version).Logger()
	if o.root == "" {
		root, err := CacheRoot()
		if err != nil {
			return "", err
		}
		o.root = root
	}
	sum, err := moduleSum(tool)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(o.root, tool.key())
	if complete(dir, tool, sum) {
		return dir, nil
	}
	if err := os.MkdirAll(o.root, 0o755); err != nil {
		return "", fmt.Errorf("creating tool cache root %s: %w", o.root, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(o.root, tool.key()+".lock"), log)
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another process may have finished the build while we waited.
	if complete(dir, tool, sum) {
		return dir, nil
	}
	if err := o.build(ctx, log, tool, dir, sum); err != nil {
		return "", err
	}
	return dir, nil
}

// Binary returns the path of one binary of the named tool, building the tool
// if needed.
func Binary(ctx context.Context, toolName, binary string, opts ...Option) (string, error) {
	tool, err := Lookup(toolName)
	if err != nil {
		return "", err
	}
	dir, err := Ensure(ctx, tool, opts...)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, binary), nil
}

func (o *options) log(ctx context.Context) zerolog.Logger {
	if o.logger != nil {
		return *o.logger
	}
	if l := zerolog.Ctx(ctx); l.GetLevel() != zerolog.Disabled {
		return *l
	}
	return ConsoleLogger().With().Str("component", "devtools").Logger()
}

// ConsoleLogger returns a human-readable logger on stderr, coloured only on a
// terminal.
func ConsoleLogger() zerolog.Logger {
	noColor := true
	if st, err := os.Stderr.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		noColor = false
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly, NoColor: noColor}).
		With().Timestamp().Logger()
}

// moduleSum hashes the embedded module so that a changed pin rebuilds even
// when the version string stays the same.
func moduleSum(tool Tool) (string, error) {
	h := sha256.New()
	for _, f := range moduleFiles() {
		data, err := modules.ReadFile("modules/" + tool.Name + "/" + f[0])
		if err != nil {
			return "", fmt.Errorf("reading embedded module of %s: %w", tool.Name, err)
		}
		fmt.Fprintf(h, "%s %d\n", f[1], len(data))
		h.Write(data)
	}
	tool.Source.hash(h)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func complete(dir string, tool Tool, sum string) bool {
	data, err := os.ReadFile(filepath.Join(dir, markerName))
	if err != nil {
		return false
	}
	var m marker
	if json.Unmarshal(data, &m) != nil || m.ModuleSHA256 != sum {
		return false
	}
	for _, b := range tool.Binaries {
		st, err := os.Stat(filepath.Join(dir, b))
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

func (o *options) build(ctx context.Context, log zerolog.Logger, tool Tool, dir, sum string) (err error) {
	goBin := o.goBin
	if goBin == "" {
		goBin = "go"
	}
	if _, err := exec.LookPath(goBin); err != nil {
		return fmt.Errorf("building %s needs the go command: %w", tool.Name, err)
	}
	if tool.Check != nil {
		if err := tool.Check(); err != nil {
			return fmt.Errorf("building %s: %w", tool.Name, err)
		}
	}
	if tool.CGO {
		cc := os.Getenv("CC")
		if cc == "" {
			cc = "gcc"
		}
		if _, err := exec.LookPath(cc); err != nil {
			return fmt.Errorf("building %s needs cgo and a C compiler (%s): %w", tool.Name, cc, err)
		}
	}
	work, err := os.MkdirTemp("", "mr-tool-"+tool.Name+"-")
	if err != nil {
		return fmt.Errorf("creating a temp module for %s: %w", tool.Name, err)
	}
	defer func() { err = errors.Join(err, os.RemoveAll(work)) }()
	for _, f := range moduleFiles() {
		data, err := fs.ReadFile(modules, "modules/"+tool.Name+"/"+f[0])
		if err != nil {
			return fmt.Errorf("reading embedded module of %s: %w", tool.Name, err)
		}
		if err := os.WriteFile(filepath.Join(work, f[1]), data, 0o644); err != nil {
			return fmt.Errorf("writing temp module of %s: %w", tool.Name, err)
		}
	}
	// A leftover folder holds an interrupted build: start clean.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing incomplete build of %s: %w", tool.Name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}

	env := append(os.Environ(),
		"GOBIN="+dir,
		"GOFLAGS=-mod=mod",
		"GOWORK=off",
	)
	if tool.CGO {
		env = append(env, "CGO_ENABLED=1")
	}
	if len(tool.NoSumDB) > 0 {
		env = append(env, "GONOSUMDB="+strings.Join(tool.NoSumDB, ","))
	}
	if tool.Source != nil {
		log.Info().Str("module", tool.Source.Module).Int("edits", len(tool.Source.Edits)).Msg("building from a changed copy of the module's source")
		if err := tool.Source.prepare(ctx, goBin, work, env); err != nil {
			return err
		}
	}

	args := append([]string{"install"}, tool.Packages...)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = work
	cmd.Env = env
	// go starts compilers and linkers; kill them all on cancel.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out

	log.Info().Str("dir", dir).Stringer("expected", tool.BuildTime).
		Msg("building tool from its pinned module; this takes minutes the first time, later runs use the cache")
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				log.Info().Stringer("elapsed", time.Since(start).Round(time.Second)).Msg("still building")
			}
		}
	}()
	runErr := cmd.Run()
	close(done)
	elapsed := time.Since(start)
	if runErr != nil {
		return fmt.Errorf("go install %s (%s %s): %w\n%s", strings.Join(tool.Packages, " "),
			tool.Name, tool.Version, runErr, tail(out.String(), 4000))
	}
	for _, b := range tool.Binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("go install of %s finished without binary %s: %w", tool.Name, b, err)
		}
	}
	m := marker{
		Tool: tool.Name, Version: tool.Version, ModuleSHA256: sum,
		GoVersion: runtime.Version(), BuiltAt: time.Now().UTC(), BuildSeconds: elapsed.Seconds(),
	}
	if err := writeMarker(dir, m); err != nil {
		return err
	}
	log.Info().Stringer("took", elapsed.Round(time.Second)).Str("dir", dir).Msg("tool built")
	return nil
}

func writeMarker(dir string, m marker) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding build marker: %w", err)
	}
	tmp := filepath.Join(dir, markerName+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing build marker: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, markerName)); err != nil {
		return fmt.Errorf("writing build marker: %w", err)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

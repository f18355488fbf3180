// Package devhs runs a throwaway Dendrite homeserver on 127.0.0.1 for the
// integration tests and the demo mode.
//
// Server name. The server is named "localhost:<port>", <port> being the port
// it listens on, and it serves no .well-known. Matrix server discovery skips
// .well-known and SRV lookups for a name with an explicit port and goes to
// that host and port, so a service verifying an OpenID token (the
// "matrix_server_name" of /openid/request_token) reaches this very server at
// /_matrix/federation/v1/openid/userinfo without any DNS (discovery of a bare
// "localhost" would ask https://localhost/.well-known and then DNS SRV, which
// leaves the machine). The server speaks plain HTTP, so such a verifier has to
// use http://127.0.0.1:<port> (URL()) rather than https. Dendrite serves the
// federation routes, openid/userinfo included, only when federation is
// enabled (Options.Federation); without it they answer 404. User IDs therefore
// look like "@alice:localhost:8008": build them with UserID, never by hand.
package devhs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
)

// Options configure Start.
type Options struct {
	// Dir holds keys, config, databases, media and the log. Empty means a
	// new temporary folder, removed by Stop.
	Dir string
	// Federation enables the federation API, needed for
	// /_matrix/federation/v1/openid/userinfo (see the package comment).
	Federation bool
	// Logger receives progress messages (default: the context's logger).
	Logger *zerolog.Logger
	// ConfigEdits sets extra keys of dendrite.yaml, by dotted path, after
	// the harness's own edits, e.g. "client_api.turn.turn_shared_secret".
	ConfigEdits map[string]any
	// Tools passes options to devtools.Ensure (e.g. a cache root).
	Tools []devtools.Option
}

// Server is a running Dendrite.
type Server struct {
	dir        string
	removeDir  func() error // devtools.ServerDir
	port       int
	serverName string
	secret     string
	proc       *devtools.Process
	bin        string
	log        zerolog.Logger
}

// Start generates keys and a config in opts.Dir and starts Dendrite on a
// free loopback port, returning once the client API answers. Dendrite is
// stopped by Stop or when ctx ends.
func Start(ctx context.Context, opts Options) (*Server, error) {
	log := zerolog.Ctx(ctx).With().Str("component", "devhs").Logger()
	if opts.Logger != nil {
		log = opts.Logger.With().Str("component", "devhs").Logger()
	}
	tool, err := devtools.Lookup(devtools.Dendrite)
	if err != nil {
		return nil, err
	}
	toolOpts := append([]devtools.Option{devtools.WithLogger(log)}, opts.Tools...)
	bin, err := devtools.Ensure(ctx, tool, toolOpts...)
	if err != nil {
		return nil, fmt.Errorf("getting dendrite binaries: %w", err)
	}
	s := &Server{bin: bin, log: log}
	if s.dir, s.removeDir, err = devtools.ServerDir(opts.Dir, "devhs-"); err != nil {
		return nil, fmt.Errorf("creating dendrite dir: %w", err)
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, errors.Join(fmt.Errorf("generating registration secret: %w", err), s.removeDir())
	}
	s.secret = hex.EncodeToString(secret)

	// The port is part of the server name, which is baked into the keys'
	// use and the databases: a retry on a taken port starts from scratch.
	lastErr := devtools.StartOnFreePorts(log, func() error { return s.start(ctx, opts) }, func() *devtools.Process { return s.proc })
	if lastErr == nil {
		return s, nil
	}
	return nil, errors.Join(lastErr, s.removeDir())
}

func (s *Server) start(ctx context.Context, opts Options) error {
	port, err := devtools.FreePort()
	if err != nil {
		return err
	}
	s.port = port
	s.serverName = "localhost:" + strconv.Itoa(port)
	run := filepath.Join(s.dir, "run-"+strconv.Itoa(port))
	if err := os.MkdirAll(run, 0o755); err != nil {
		return fmt.Errorf("creating dendrite dir: %w", err)
	}
	keyPath := filepath.Join(run, "matrix_key.pem")
	if out, err := exec.CommandContext(ctx, filepath.Join(s.bin, "generate-keys"), "-private-key", keyPath).CombinedOutput(); err != nil {
		return fmt.Errorf("generating dendrite keys: %w: %s", err, out)
	}
	var stdout, stderr bytes.Buffer
	gen := exec.CommandContext(ctx, filepath.Join(s.bin, "generate-config"), "-ci", "-dir", run, "-server", s.serverName)
	gen.Stdout, gen.Stderr = &stdout, &stderr
	if err := gen.Run(); err != nil {
		return fmt.Errorf("generating dendrite config: %w: %s", err, stderr.String())
	}
	cfg, err := editConfig(stdout.Bytes(), s.edits(keyPath, opts))
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(run, "dendrite.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return fmt.Errorf("writing dendrite config: %w", err)
	}
	s.proc, err = devtools.StartProcess(ctx, devtools.ProcessSpec{
		Name: "dendrite",
		Path: filepath.Join(s.bin, "dendrite"),
		Args: []string{
			"-config", cfgPath,
			"-http-bind-address", "127.0.0.1:" + strconv.Itoa(port),
			"-really-enable-open-registration",
		},
		Dir:     run,
		LogPath: filepath.Join(s.dir, "dendrite.log"),
	})
	if err != nil {
		return err
	}
	if err := s.proc.WaitHTTP(ctx, s.URL()+"/_matrix/client/versions", 60*time.Second); err != nil {
		return errors.Join(err, s.proc.Stop())
	}
	s.log.Info().Str("url", s.URL()).Str("server_name", s.serverName).Bool("federation", opts.Federation).
		Str("log", s.proc.LogPath()).Msg("dendrite ready")
	return nil
}

func (s *Server) edits(keyPath string, opts Options) []edit {
	e := []edit{
		{"global.server_name", s.serverName},
		{"global.private_key", keyPath},
		{"global.disable_federation", !opts.Federation},
		{"global.well_known_server_name", ""},
		{"global.well_known_client_name", ""},
		{"global.presence.enable_outbound", false},
		{"global.report_stats.enabled", false},
		{"client_api.registration_shared_secret", s.secret},
		// Logs go to stderr, which StartProcess writes to <Dir>/dendrite.log.
		{"logging", []map[string]any{{"type": "std", "level": "info"}}},
	}
	if opts.Federation {
		// Nothing leaves the machine in the tests; a relaxed client keeps
		// a stray federation request from hanging on TLS.
		e = append(e, edit{"federation_api.disable_tls_validation", true})
	}
	keys := make([]string, 0, len(opts.ConfigEdits))
	for k := range opts.ConfigEdits {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		e = append(e, edit{k, opts.ConfigEdits[k]})
	}
	return e
}

// URL returns the client (and federation) base URL, http://127.0.0.1:<port>.
func (s *Server) URL() string { return "http://127.0.0.1:" + strconv.Itoa(s.port) }

// ServerName returns the Matrix server name, "localhost:<port>".
func (s *Server) ServerName() string { return s.serverName }

// UserID returns the full user ID of a local user.
func (s *Server) UserID(localpart string) string { return "@" + localpart + ":" + s.serverName }

// LogTail returns at most n bytes from the end of Dendrite's log, for test
// failure output.
func (s *Server) LogTail(n int) string { return s.proc.LogTail(n) }

// Stop kills Dendrite and, if Start created the folder, removes it.
func (s *Server) Stop() error {
	return errors.Join(s.proc.Stop(), s.removeDir())
}

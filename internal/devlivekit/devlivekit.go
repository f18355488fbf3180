// Package devlivekit runs a throwaway livekit-server bound to 127.0.0.1 for
// the integration tests and the demo mode.
//
// The server listens only on loopback: HTTP/WebSocket signalling, ICE over
// one UDP port and one TCP port, and its built-in TURN relay on UDP. The TURN
// relay matters inside a loopback-only network namespace, where
// server-sdk-go clients gather no usable host candidate of their own: they
// reach the server through a relay allocated on 127.0.0.1.
package devlivekit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
)

// Options configure Start.
type Options struct {
	// Dir holds the config and the log. Empty means a new temporary
	// folder, removed by Stop.
	Dir string
	// WebhookURLs receive livekit's webhooks, signed with the API key.
	WebhookURLs []string
	// Redis, host:port, connects the server to LiveKit Egress workers (internal/devegress).
	Redis string
	// Logger receives progress messages (default: the context's logger).
	Logger *zerolog.Logger
	// Tools passes options to devtools.Ensure (e.g. a cache root).
	Tools []devtools.Option
}

// Server is a running livekit-server.
type Server struct {
	dir       string
	removeDir func() error // devtools.ServerDir
	ports     ports
	key       string
	secret    string
	proc      *devtools.Process
	log       zerolog.Logger
}

type ports struct {
	http, rtcTCP, rtcUDP, turnUDP int
}

// Start writes a config into opts.Dir and starts livekit-server, returning
// once it answers HTTP. It is stopped by Stop or when ctx ends.
func Start(ctx context.Context, opts Options) (*Server, error) {
	log := zerolog.Ctx(ctx).With().Str("component", "devlivekit").Logger()
	if opts.Logger != nil {
		log = opts.Logger.With().Str("component", "devlivekit").Logger()
	}
	bin, err := devtools.Binary(ctx, devtools.LiveKitServer, "server",
		append([]devtools.Option{devtools.WithLogger(log)}, opts.Tools...)...)
	if err != nil {
		return nil, fmt.Errorf("getting livekit-server binary: %w", err)
	}
	s := &Server{log: log, key: "devkey-" + randomHex(4), secret: randomHex(24)}
	if s.dir, s.removeDir, err = devtools.ServerDir(opts.Dir, "devlivekit-"); err != nil {
		return nil, fmt.Errorf("creating livekit dir: %w", err)
	}
	lastErr := devtools.StartOnFreePorts(log, func() error { return s.start(ctx, bin, opts) }, func() *devtools.Process { return s.proc })
	if lastErr == nil {
		return s, nil
	}
	return nil, errors.Join(lastErr, s.removeDir())
}

func (s *Server) start(ctx context.Context, bin string, opts Options) error {
	var err error
	if s.ports.http, err = devtools.FreePort(); err != nil {
		return err
	}
	if s.ports.rtcTCP, err = devtools.FreePort(); err != nil {
		return err
	}
	if s.ports.rtcUDP, err = devtools.FreeUDPPort(); err != nil {
		return err
	}
	if s.ports.turnUDP, err = devtools.FreeUDPPort(); err != nil {
		return err
	}
	cfg, err := yaml.Marshal(s.config(opts))
	if err != nil {
		return fmt.Errorf("encoding livekit config: %w", err)
	}
	cfgPath := filepath.Join(s.dir, "livekit.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return fmt.Errorf("writing livekit config: %w", err)
	}
	s.proc, err = devtools.StartProcess(ctx, devtools.ProcessSpec{
		Name:    "livekit-server",
		Path:    bin,
		Args:    []string{"--config", cfgPath},
		Dir:     s.dir,
		LogPath: filepath.Join(s.dir, "livekit.log"),
	})
	if err != nil {
		return err
	}
	if err := s.proc.WaitHTTP(ctx, s.HTTPURL()+"/", 60*time.Second); err != nil {
		return errors.Join(err, s.proc.Stop())
	}
	s.log.Info().Str("url", s.URL()).Int("turn_udp", s.ports.turnUDP).Str("log", s.proc.LogPath()).
		Msg("livekit-server ready")
	return nil
}

// config is the server's YAML config; every listener is on 127.0.0.1.
func (s *Server) config(opts Options) map[string]any {
	cfg := map[string]any{
		"port":           s.ports.http,
		"bind_addresses": []string{"127.0.0.1"},
		"rtc": map[string]any{
			"tcp_port":                  s.ports.rtcTCP,
			"udp_port":                  s.ports.rtcUDP,
			"use_external_ip":           false,
			"node_ip":                   "127.0.0.1",
			"enable_loopback_candidate": true,
			"interfaces":                map[string]any{"includes": []string{"lo"}},
			"ips":                       map[string]any{"includes": []string{"127.0.0.1/8"}},
		},
		"turn": map[string]any{
			"enabled":        true,
			"domain":         "localhost",
			"udp_port":       s.ports.turnUDP,
			"bind_addresses": []string{"127.0.0.1"},
			// livekit's TURN refuses to relay to loopback peers unless
			// allowed, and the SFU's own candidates are all on loopback.
			// (The publish/subscribe test also passed without this with
			// v1.13.5; it stays so a relayed path is never refused.)
			"allow_restricted_peer_cidrs": []string{"127.0.0.0/8"},
		},
		"keys":    map[string]string{s.key: s.secret},
		"logging": map[string]any{"level": "info", "pion_level": "error"},
	}
	if len(opts.WebhookURLs) > 0 {
		cfg["webhook"] = map[string]any{"api_key": s.key, "urls": opts.WebhookURLs}
	}
	if opts.Redis != "" {
		cfg["redis"] = map[string]any{"address": opts.Redis}
	}
	return cfg
}

// URL returns the signalling URL clients connect to, ws://127.0.0.1:<port>.
func (s *Server) URL() string { return "ws://127.0.0.1:" + strconv.Itoa(s.ports.http) }

// HTTPURL returns the same endpoint as http://, for the Twirp server API.
func (s *Server) HTTPURL() string { return "http://127.0.0.1:" + strconv.Itoa(s.ports.http) }

// APIKey returns the API key.
func (s *Server) APIKey() string { return s.key }

// APISecret returns the API secret (48 characters).
func (s *Server) APISecret() string { return s.secret }

// Dir returns the server's folder.
func (s *Server) Dir() string { return s.dir }

// LogTail returns at most n bytes from the end of the log.
func (s *Server) LogTail(n int) string { return s.proc.LogTail(n) }

// Stop kills livekit-server and, if Start created the folder, removes it.
func (s *Server) Stop() error {
	return errors.Join(s.proc.Stop(), s.removeDir())
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (it crashes the program instead)
	return hex.EncodeToString(b)
}

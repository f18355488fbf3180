// Command matrix-recorder is a Matrix bot that records calls multitrack: every
// participant's every track as its own file, on one timeline, with a manifest.
//
//	matrix-recorder -config config.yaml   run the bot
//	matrix-recorder healthcheck -c FILE   ask the running bot's /healthz (exit 0: ready)
//	matrix-recorder copy-database -c FILE -to-file URIFILE
//	                                      copy a single recorder's data_dir into PostgreSQL
//	matrix-recorder demo                  try it with a throwaway local homeserver (from a
//	                                      source checkout: see demo.go)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/bot"
	"github.com/matrix-recorder/matrix-recorder/metrics"
	"github.com/matrix-recorder/matrix-recorder/storage/lockfile"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	// exitConfig: the config or the command line is wrong, or another recorder runs on
	// the same data_dir.
	exitConfig = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "demo":
			return runDemo(args[1:], stdout, stderr)
		case "healthcheck":
			return runHealthcheck(args[1:], stdout, stderr)
		case "copy-database":
			return runCopyDatabase(args[1:], stdout, stderr)
		}
	}
	opts, code, done := parseFlags(args, stdout, stderr)
	if done {
		return code
	}
	if opts.showVersion {
		fmt.Fprintln(stdout, "matrix-recorder", currentVersion())
		return exitOK
	}
	if opts.generateConfig {
		return generateConfig(opts, stdout, stderr)
	}
	loaded, code, ok := loadConfig(opts, stderr)
	if !ok {
		return code
	}
	cfg := loaded.Config
	log, err := newLogger(cfg.Log, stderr, isTerminal(stderr))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	ver := currentVersion()
	logStart(log, ver, opts.configPath, loaded.Warnings)
	ctx, stop := signalContext(log)
	defer stop()

	b, err := bot.New(ctx, cfg, bot.Options{Version: ver.Short(), Logger: log,
		Build: metrics.BuildInfo{Version: ver.Version, Revision: ver.Revision, GoVersion: ver.Go}})
	var held *lockfile.HeldError
	if errors.As(err, &held) {
		// A usage error: two recorders on one data_dir would repair each other's live
		// recordings and fight over one device.
		log.Error().Err(err).Str("lock_file", held.Path).Int("pid", held.PID).Msg("Not starting")
		fmt.Fprintf(stderr, "%v.\nStop that one first, or give this one its own data_dir.\n", err)
		return exitConfig
	}
	if err != nil {
		log.Error().Err(err).Msg("Could not start")
		return exitError
	}
	if err := b.Run(ctx, opts.shutdownTimeout); err != nil {
		log.Error().Err(err).Msg("Stopped with an error")
		return exitError
	}
	log.Info().Msg("Stopped; every recording is finalised")
	return exitOK
}

func noConfigHelp(path string) string {
	return fmt.Sprintf(`No config file at %s.

To run the recorder you need a Matrix account for the bot. Then:

  1. matrix-recorder -generate-config -c %s
     (-set matrix.homeserver=https://your.homeserver -set matrix.user_id=@recorder:your.server
     fills those in; or copy config.example.yaml from the source tree)
  2. Fill in the matrix section:
       matrix.homeserver   https://your.homeserver
       matrix.user_id      @recorder:your.server
       matrix.password     the bot's password (or MATRIX_RECORDER_MATRIX_PASSWORD in the
                           environment, or MATRIX_RECORDER_MATRIX_PASSWORD_FILE naming a file)
     and, if you like, data_dir (keys and state) and recordings.dir (where calls are saved).
  3. matrix-recorder -c %s
  4. Invite the bot into a direct chat and call it.

No homeserver at hand? Try everything locally first, from a source checkout:

  go run -tags goolm ./cmd/matrix-recorder demo
`, path, path, path)
}

// signalContext is cancelled by the first SIGINT/SIGTERM (a clean stop that finalises every
// recording); a second signal exits at once.
func signalContext(log zerolog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		log.Info().Str("signal", s.String()).Msg("Stopping cleanly; send the signal again to exit at once")
		cancel()
		s = <-sigs
		log.Warn().Str("signal", s.String()).Msg("Exiting at once; files stay playable up to their last flush")
		os.Exit(exitError)
	}()
	return ctx, func() {
		signal.Stop(sigs)
		cancel()
	}
}

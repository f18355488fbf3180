// Command matrix-recorder-demo runs the whole product on one machine with nothing to set
// up: a throwaway Dendrite homeserver, the bot, and a synthetic caller that places an
// end-to-end encrypted 1:1 call. It prints what the bot said and where the files are.
//
// It is the development harness's, not the release binary's: `matrix-recorder demo` runs
// it from a source checkout (go run -tags goolm ./cmd/matrix-recorder demo).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/internal/demo"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("matrix-recorder demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 10*time.Second, "length of the demo call")
	dir := fs.String("recordings", "./recordings", "where the call folder goes")
	plain := fs.Bool("unencrypted", false, "use an unencrypted room")
	verbose := fs.Bool("v", false, "show the bot's log")
	version := fs.String("recorder-version", "dev", "the version the manifest names (matrix-recorder demo passes its own)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level := zerolog.WarnLevel
	if *verbose {
		level = zerolog.InfoLevel
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.DateTime}).Level(level).With().Timestamp().Logger()
	// The first signal stops the demo cleanly (the homeserver and the bot shut down); once
	// it did, a second one ends the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	if _, err := demo.Run(ctx, demo.Options{
		Duration: *duration, RecordingsDir: *dir, Encrypted: !*plain, Version: *version, Out: stdout, Logger: log,
	}); err != nil {
		fmt.Fprintf(stderr, "Demo failed: %v\n", err)
		return 1
	}
	return 0
}

// Command ensure-tools builds (or finds in the cache) the pinned programs the
// integration tests run, and prints the folder of each:
//
//	go run ./internal/devtools/cmd/ensure-tools dendrite versitygw livekit-server egress
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/matrix-recorder/matrix-recorder/internal/devtools"
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: ensure-tools [-licences] [tool...]\n\nBuilds the named tools once per pinned version (default: all of %s)\nand prints NAME=DIR for each. Cache root: $%s or <user cache dir>/matrix-recorder/tools.\nFirst it refuses any embedded tool pin that names an AGPL module.\n\n",
			strings.Join(devtools.Names(), ", "), devtools.EnvCacheRoot)
		flag.PrintDefaults()
	}
	licencesOnly := flag.Bool("licences", false, "only check that no tool pin names an AGPL module, build nothing")
	flag.Parse()
	var err error
	if *licencesOnly {
		err = devtools.CheckEmbeddedLicences()
	} else {
		err = run(flag.Args())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ensure-tools:", err)
		os.Exit(1)
	}
}

func run(names []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := devtools.ConsoleLogger()
	// Every embedded pin, not only the named tools: an AGPL module fails the test
	// command here, before the first build.
	if err := devtools.CheckEmbeddedLicences(); err != nil {
		return err
	}
	if len(names) == 0 {
		names = devtools.Names()
	}
	tools := make([]devtools.Tool, 0, len(names))
	for _, name := range names {
		tool, err := devtools.Lookup(name)
		if err != nil {
			return err
		}
		tools = append(tools, tool)
	}
	// One after the other: parallel builds on a small machine are no faster.
	for _, tool := range tools {
		dir, err := devtools.Ensure(ctx, tool, devtools.WithLogger(log))
		if err != nil {
			return err
		}
		fmt.Printf("%s=%s\n", tool.Name, dir)
	}
	return nil
}

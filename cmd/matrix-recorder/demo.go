package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
)

// The demo (a throwaway homeserver, the bot and a synthetic caller) is a development tool:
// it builds Dendrite and drives test clients, none of which belongs in the release binary.
// It is ./cmd/matrix-recorder-demo; from a source checkout, `matrix-recorder demo` builds
// and runs it, so the README's first command stays one command.

// demoPackage is the demo's command in the source tree.
const demoPackage = "./cmd/matrix-recorder-demo"

// modulePath is this module's, for finding the source tree.
const modulePath = "github.com/matrix-recorder/matrix-recorder"

const demoHelp = `The demo runs a throwaway homeserver and a test caller: they are development tools and
not part of this binary. Run it from a source checkout (Go and gcc needed):

  git clone https://` + modulePath + `.git
  cd matrix-recorder
  go run -tags goolm ./cmd/matrix-recorder demo
`

// runDemo builds the demo from the source tree around the working directory and runs it
// with args, passing its output and the signals it gets on.
func runDemo(args []string, stdout, stderr io.Writer) int {
	root, ok := sourceRoot()
	goBin, err := exec.LookPath("go")
	if !ok || err != nil {
		fmt.Fprint(stderr, demoHelp)
		return exitConfig
	}
	tmp, err := os.MkdirTemp("", "matrix-recorder-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "Demo: %v\n", err)
		return exitError
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "matrix-recorder-demo")
	build := exec.Command(goBin, "build", "-tags", buildTags(), "-o", bin, demoPackage)
	build.Dir, build.Stdout, build.Stderr = root, stderr, stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(stderr, "Building the demo (%s in %s): %v\n", demoPackage, root, err)
		return exitError
	}
	cmd := exec.Command(bin, append([]string{"-recorder-version", currentVersion().Short()}, args...)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group: a Ctrl-C reaches it once, through this process, not a second
	// time from the terminal (the demo exits at once on a second signal).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "Demo: %v\n", err)
		return exitError
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	default:
		fmt.Fprintf(stderr, "Demo: %v\n", err)
		return exitError
	}
}

// sourceRoot finds this module's source tree at or above the working directory.
func sourceRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if isModuleRoot(dir) {
			_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(demoPackage)))
			return dir, err == nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// isModuleRoot reports whether dir holds this module's go.mod.
func isModuleRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == modulePath
		}
	}
	return false
}

// buildTags are the tags this binary was built with (goolm when it does not say).
func buildTags() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-tags" && s.Value != "" {
				return s.Value
			}
		}
	}
	return "goolm"
}

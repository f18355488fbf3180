package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/config"
)

// newLogger builds the logger log.level and log.format ask for, writing to out: the
// console format when asked or, with auto, when out is a terminal; JSON otherwise (a
// service manager's journal, a container's log).
func newLogger(c config.Log, out io.Writer, terminal bool) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(strings.ToLower(c.Level))
	if err != nil || c.Level == "" {
		return zerolog.Logger{}, fmt.Errorf("log.level %q is not one of trace, debug, info, warn, error", c.Level)
	}
	var w io.Writer = out
	if c.Format == config.LogConsole || (c.Format == config.LogAuto && terminal) {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: time.DateTime}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

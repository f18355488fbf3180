package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// options is the command line of the bot (not of the demo).
type options struct {
	configPath      string
	generateConfig  bool
	showVersion     bool
	sets            setFlags
	shutdownTimeout time.Duration
}

// setFlags collects repeated -set key=value.
type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, " ") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

const usageText = `Usage:
  matrix-recorder [-c config.yaml]                 run the recorder bot
  matrix-recorder -generate-config [-c config.yaml] [-set key=value]...
                                                   write the annotated example config with your
                                                   values, or upgrade an existing config in place
  matrix-recorder healthcheck [-c config.yaml]     ask the running recorder's /healthz (exit 0: ready)
  matrix-recorder copy-database [-c config.yaml] -to-file FILE
                                                   copy this recorder's data_dir into an empty
                                                   PostgreSQL database (docs/fleet.md)
  matrix-recorder demo [-duration 10s]             try it: local homeserver, bot and a caller (source checkout)
  matrix-recorder -version

Flags:
  -c, -config FILE          the YAML config file (default config.yaml; "-" with -generate-config:
                            standard output)
  -generate-config          write the example config to the -config path, filled in with the
                            values given by -set, the environment and an existing file there
                            (kept as FILE.bak), then exit
  -set key=value            set a key, e.g. -set matrix.homeserver=https://matrix.your.domain;
                            may be repeated; wins over the file and the environment; not for
                            secrets (the command line is visible to every user of the machine)
  -shutdown-timeout 30s     how long a stop may take to finalise recordings
  -version                  print the version and exit
  -h, -help                 show this help

Every key can also come from the environment: MATRIX_RECORDER_ and the key's path in upper
case with _ for ., e.g. MATRIX_RECORDER_MATRIX_HOMESERVER; MATRIX_RECORDER_MATRIX_PASSWORD_FILE
names a file that holds the password. Every key is explained in the example config.
`

// parseFlags reads the command line. When done is true the program exits with code: after
// -h (the usage on stdout, code 0) or a mistake on the command line (stderr, code 2).
func parseFlags(args []string, stdout, stderr io.Writer) (o options, code int, done bool) {
	fs := flag.NewFlagSet("matrix-recorder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below, to stdout for -h and to stderr after a mistake
	fs.StringVar(&o.configPath, "config", "config.yaml", "")
	fs.StringVar(&o.configPath, "c", "config.yaml", "")
	fs.BoolVar(&o.generateConfig, "generate-config", false, "")
	fs.BoolVar(&o.showVersion, "version", false, "")
	fs.Var(&o.sets, "set", "")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usageText)
		return o, exitOK, true
	case err != nil:
		// flag has said what is wrong.
		fmt.Fprint(stderr, "\n"+usageText)
		return o, exitConfig, true
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "Unexpected argument %q (flags come before it; the commands are healthcheck, copy-database and demo).\n\n%s", fs.Arg(0), usageText)
		return o, exitConfig, true
	}
	return o, exitOK, false
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"

	"github.com/matrix-recorder/matrix-recorder/config"
)

// configOptions is where values besides the file come from: the environment and -set.
func configOptions(o options) config.Options {
	return config.Options{Environ: os.Environ(), Set: o.sets}
}

// loadConfig reads and checks the config. When ok is false the program exits with code,
// having said why (every problem at once, each with its key).
func loadConfig(o options, stderr io.Writer) (l *config.Loaded, code int, ok bool) {
	l, err := config.Load(o.configPath, configOptions(o))
	var cerr *config.Error
	switch {
	case errors.Is(err, config.ErrNoConfig):
		fmt.Fprint(stderr, noConfigHelp(o.configPath))
		return nil, exitConfig, false
	case errors.As(err, &cerr):
		fmt.Fprintf(stderr, "%v\n\nEvery key is explained in the example config (matrix-recorder -generate-config -c FILE writes it,\nand upgrades an existing config in place).\n", err)
		return nil, exitConfig, false
	case err != nil:
		fmt.Fprintln(stderr, err)
		return nil, exitConfig, false
	}
	return l, exitOK, true
}

// logStart says which build starts with which config, and what the config loading
// noticed (renamed keys).
func logStart(log zerolog.Logger, v buildVersion, path string, warnings []string) {
	ev := log.Info().Str("version", v.Short()).Str("config", path)
	if v.Revision != "" {
		ev = ev.Str("revision", v.Revision).Bool("modified", v.Modified)
	}
	ev.Str("go", v.Go).Msg("Starting matrix-recorder")
	for _, w := range warnings {
		log.Warn().Str("config", path).Msg(w)
	}
}

// generateConfig writes the annotated example config with the operator's values: a new
// file, or an existing one upgraded in place (the old one kept as .bak).
func generateConfig(o options, stdout, stderr io.Writer) int {
	path := o.configPath
	var existing []byte
	if path != "-" {
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			existing = data
		case !errors.Is(err, os.ErrNotExist):
			fmt.Fprintf(stderr, "Reading %s: %v\n", path, err)
			return exitConfig
		}
	}
	g, err := config.Generate(existing, path, configOptions(o))
	if err != nil {
		fmt.Fprintf(stderr, "%v\n\nNothing was written: fix these first (an unknown key or a value of the wrong type would be lost).\n", err)
		return exitConfig
	}
	switch {
	case path == "-":
		if _, err := stdout.Write(g.Data); err != nil {
			return exitError
		}
		return exitOK
	case existing == nil:
		if err := writeNew(path, g.Data); err != nil {
			fmt.Fprintf(stderr, "Writing %s: %v\n", path, err)
			return exitError
		}
		fmt.Fprintf(stdout, "Wrote %s: the example config, every key explained", path)
	case bytes.Equal(existing, g.Data):
		fmt.Fprintf(stdout, "%s is up to date", path)
	default:
		if err := upgradeInPlace(path, existing, g.Data); err != nil {
			fmt.Fprintf(stderr, "Upgrading %s: %v\n", path, err)
			return exitError
		}
		fmt.Fprintf(stdout, "Upgraded %s to this version's example config (the old file is %s.bak)", path, path)
	}
	if len(g.Kept) > 0 {
		fmt.Fprintf(stdout, ", with your values for %s", strings.Join(g.Kept, ", "))
	}
	fmt.Fprintln(stdout, ".")
	for _, w := range g.Warnings {
		fmt.Fprintln(stdout, "Renamed: "+w)
	}
	for _, k := range g.FromEnv {
		fmt.Fprintf(stdout, "%s is set in the environment and stays there (not written into the file).\n", k)
	}
	// What is still missing, as the bot would say it at start.
	var cerr *config.Error
	if _, err := config.Read(g.Data, path, configOptions(o)); errors.As(err, &cerr) {
		fmt.Fprintln(stdout, "\nBefore the recorder can start, fill in or fix:")
		for _, p := range cerr.Problems {
			fmt.Fprintln(stdout, "  - "+p.String())
		}
		return exitOK
	}
	fmt.Fprintf(stdout, "Run it with: matrix-recorder -c %s\n", path)
	return exitOK
}

// writeNew creates path (never overwriting) with mode 0600: it may hold secrets.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

// upgradeInPlace keeps the old file as path.bak and replaces path atomically, with the
// old file's permissions.
func upgradeInPlace(path string, old, data []byte) error {
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := os.WriteFile(path+".bak", old, mode); err != nil {
		return fmt.Errorf("keep the old file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

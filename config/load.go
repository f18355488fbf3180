package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxFile bounds the config file.
const maxFile = 1 << 20

// ErrNoConfig is returned by Load when the file does not exist.
var ErrNoConfig = errors.New("config file not found")

// Options says where values besides the file come from. The file is read first, then the
// environment, then -set: a later one wins.
type Options struct {
	// Environ is the environment as os.Environ returns it; nil: none.
	Environ []string
	// Set are "key=value" settings from the command line (-set).
	Set []string
	// ReadFile reads the files _FILE variables name; nil: os.ReadFile (bounded).
	ReadFile func(string) ([]byte, error)
	// renames replaces the table of renamed keys (tests).
	renames []Rename
}

func (o Options) renameTable() []Rename {
	if o.renames != nil {
		return o.renames
	}
	return renamed
}

// Loaded is a configuration and what reading it noticed.
type Loaded struct {
	Config Config
	// Warnings are to be logged at start: renamed keys and their new names.
	Warnings []string
}

// Load reads the file at path with the environment and settings of o, and validates it.
// Every problem is reported at once, in an *Error.
func Load(path string, o Options) (*Loaded, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Read(data, path, o)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoConfig, path)
	} else if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("config %s is larger than %d bytes", path, maxFile)
	}
	return data, nil
}

// Parse decodes YAML strictly over the defaults, applies the process environment and
// validates.
func Parse(r io.Reader) (Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFile))
	if err != nil {
		return Config{}, fmt.Errorf("read: %w", err)
	}
	l, err := Read(data, "config", Options{Environ: os.Environ()})
	if err != nil {
		return Config{}, err
	}
	return l.Config, nil
}

// Read decodes data (named source in messages) over the defaults, applies renamed keys,
// the environment and -set, and validates.
func Read(data []byte, source string, o Options) (*Loaded, error) {
	st, err := decodeAll(data, o)
	if err != nil {
		return nil, &Error{Source: source, Problems: []Problem{{Msg: err.Error()}}}
	}
	probs := st.problems
	for _, p := range st.cfg.problems() {
		if !st.failed[p.Key] {
			p.Where = st.origins.where(p.Key)
			probs = append(probs, p)
		}
	}
	if len(probs) > 0 {
		return nil, &Error{Source: source, Problems: probs}
	}
	return &Loaded{Config: st.cfg, Warnings: append(st.warnings, st.cfg.warnings()...)}, nil
}

// decodeState is a decoded configuration before validation.
type decodeState struct {
	cfg      Config
	root     *yaml.Node // the file's top-level mapping, with renames and overrides applied
	problems []Problem
	warnings []string
	origins  origins
	failed   map[string]bool
}

// parseRoot parses data into its top-level mapping node (an empty one for an empty file).
func parseRoot(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
	}
	return doc.Content[0], nil
}

// decodeAll runs every step but validation. The error is a YAML syntax error: nothing
// else can be checked then.
func decodeAll(data []byte, o Options) (*decodeState, error) {
	root, err := parseRoot(data)
	if err != nil {
		return nil, err
	}
	st := &decodeState{cfg: Default(), root: root}
	ks := keysOf(reflect.TypeOf(Config{}))
	renames := o.renameTable()
	from := map[*yaml.Node]string{}
	if root.Kind == yaml.MappingNode {
		w, p := applyRenames(root, renames)
		st.warnings = append(st.warnings, w...)
		st.problems = append(st.problems, p...)
		table := newEnvTable(ks, renames)
		envOvs, w, p := envOverrides(o.Environ, table, o.ReadFile)
		st.warnings = append(st.warnings, w...)
		st.problems = append(st.problems, p...)
		setOvs, p := setOverrides(o.Set, indexKeys(ks), table)
		st.problems = append(st.problems, p...)
		st.problems = append(st.problems, applyOverrides(root, append(envOvs, setOvs...), from)...)
	}
	d := newDecoder(reflect.TypeOf(Config{}), from)
	d.section(root, reflect.ValueOf(&st.cfg).Elem(), "", false)
	st.problems = append(st.problems, d.problems...)
	st.origins, st.failed = d.origins, d.failed
	return st, nil
}

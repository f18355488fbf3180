package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts the name of every environment variable that sets a key: the dotted path
// in upper case with "." → "_" (matrix.homeserver is MATRIX_RECORDER_MATRIX_HOMESERVER).
// "__" between levels (MATRIX_RECORDER_STORAGE__S3__ACCESS_KEY) is always accepted too and
// is the only spelling of a key whose single-underscore name another key already has.
const EnvPrefix = "MATRIX_RECORDER_"

// EnvFileSuffix appended to a secret's variable names the file that holds the secret
// (MATRIX_RECORDER_MATRIX_PASSWORD_FILE=/run/secrets/password); one trailing newline is
// dropped.
const EnvFileSuffix = "_FILE"

// The environment variables of earlier releases. They keep working as aliases of the keys
// (legacyEnv lists them all).
const (
	EnvPassword     = "MATRIX_RECORDER_PASSWORD"
	EnvAccessToken  = "MATRIX_RECORDER_ACCESS_TOKEN"
	EnvPickleKey    = "MATRIX_RECORDER_PICKLE_KEY"
	EnvRecoveryKey  = "MATRIX_RECORDER_RECOVERY_KEY"
	EnvS3AccessKey  = "MATRIX_RECORDER_S3_ACCESS_KEY"
	EnvS3SecretKey  = "MATRIX_RECORDER_S3_SECRET_KEY"
	EnvWebhookToken = "MATRIX_RECORDER_WEBHOOK_TOKEN"
)

// legacyEnv maps each earlier variable to its key.
var legacyEnv = []struct{ Name, Key string }{
	{EnvPassword, "matrix.password"},
	{EnvAccessToken, "matrix.access_token"},
	{EnvPickleKey, "matrix.pickle_key"},
	{EnvRecoveryKey, "matrix.recovery_key"},
	{EnvS3AccessKey, "storage.s3.access_key"},
	{EnvS3SecretKey, "storage.s3.secret_key"},
	{EnvWebhookToken, "http.webhook_token"},
}

// LegacyEnv returns the environment variables of earlier releases and the keys they set.
func LegacyEnv() map[string]string {
	m := make(map[string]string, len(legacyEnv))
	for _, l := range legacyEnv {
		m[l.Name] = l.Key
	}
	return m
}

// EnvName is the environment variable of a dotted key: "calls.max_duration" gives
// MATRIX_RECORDER_CALLS_MAX_DURATION. (Two keys that give one name are told apart by
// envTable; EnvVars lists what each key really answers to.)
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// envNameNested spells a key with "__" between levels; it never collides.
func envNameNested(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "__"))
}

// envTarget is what one variable sets.
type envTarget struct {
	key  key
	file bool // the variable names a file holding the value (_FILE)
	// renamedFrom is the old key of a renamed one (its old variable still works).
	renamedFrom string
	legacy      bool
}

// envTable maps variable names to keys, built from the config struct.
type envTable struct {
	names map[string]envTarget
	// words are the first words (after the prefix) that only config keys use: a variable
	// that starts with one but names no key is a mistake, not someone else's variable.
	words map[string]bool
}

// newEnvTable builds the names of every key of ks. When two keys give the same
// single-underscore name, the one with fewer levels gets it (the key whose own name has an
// underscore, e.g. a.b_c over a.b.c), then the one first in alphabetical order; the others
// are reached through their "__" names. The exact name of a key wins over another key's
// _FILE name (storage.s3.access_key_file over storage.s3.access_key + _FILE; both say
// where the access key is).
func newEnvTable(ks []key, renames []Rename) envTable {
	t := envTable{names: map[string]envTarget{}, words: map[string]bool{}}
	byName := map[string][]key{}
	for _, k := range ks {
		n := EnvName(k.Path)
		byName[n] = append(byName[n], k)
		t.words[strings.SplitN(strings.TrimPrefix(n, EnvPrefix), "_", 2)[0]] = true
	}
	for n, cands := range byName {
		sort.Slice(cands, func(i, j int) bool {
			di, dj := strings.Count(cands[i].Path, "."), strings.Count(cands[j].Path, ".")
			if di != dj {
				return di < dj
			}
			return cands[i].Path < cands[j].Path
		})
		t.names[n] = envTarget{key: cands[0]}
	}
	for _, k := range ks {
		if n := envNameNested(k.Path); t.names[n].key.Path == "" {
			t.names[n] = envTarget{key: k}
		}
	}
	for _, k := range ks {
		if !k.Secret {
			continue
		}
		for _, n := range []string{EnvName(k.Path), envNameNested(k.Path)} {
			if _, taken := t.names[n+EnvFileSuffix]; !taken && t.names[n].key.Path == k.Path {
				t.names[n+EnvFileSuffix] = envTarget{key: k, file: true}
			}
		}
	}
	idx := indexKeys(ks)
	for _, r := range renames {
		k, ok := idx[r.New]
		if !ok {
			continue
		}
		if n := EnvName(r.Old); t.names[n].key.Path == "" {
			t.names[n] = envTarget{key: k, renamedFrom: r.Old}
		}
	}
	for _, l := range legacyEnv {
		if k, ok := idx[l.Key]; ok {
			if _, taken := t.names[l.Name]; !taken {
				t.names[l.Name] = envTarget{key: k, legacy: true}
			}
		}
	}
	return t
}

// EnvVars returns, for every key, the environment variables that set it (the first is the
// one to document), legacy names included.
func EnvVars() map[string][]string {
	t := newEnvTable(keysOf(reflect.TypeOf(Config{})), renamed)
	out := map[string][]string{}
	names := make([]string, 0, len(t.names))
	for n := range t.names {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		// Single-underscore names first, then "__", then _FILE and legacy ones.
		ri, rj := envRank(t.names[names[i]], names[i]), envRank(t.names[names[j]], names[j])
		if ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	for _, n := range names {
		tg := t.names[n]
		out[tg.key.Path] = append(out[tg.key.Path], n)
	}
	return out
}

func envRank(t envTarget, name string) int {
	switch {
	case t.legacy || t.renamedFrom != "":
		return 3
	case t.file:
		return 2
	case strings.Contains(strings.TrimPrefix(name, EnvPrefix), "__"):
		return 1
	}
	return 0
}

// override sets one key from outside the config file.
type override struct {
	key   key
	node  *yaml.Node
	where string // the variable's name, or "-set"
	raw   string // the value as given, to tell equal settings from conflicting ones
}

// maxEnvFile bounds a _FILE secret.
const maxEnvFile = 1 << 20

// envOverrides reads the keys set in environ ("NAME=value" entries). An empty variable
// counts as unset. Variables outside the prefix, and those of the prefix that start with
// no section's name (MATRIX_RECORDER_CI), are not the config's and are ignored.
func envOverrides(environ []string, t envTable, readFile func(string) ([]byte, error)) (ovs []override, warnings []string, probs []Problem) {
	env := map[string]string{}
	var names []string
	for _, e := range environ {
		name, val, ok := strings.Cut(e, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || val == "" {
			continue
		}
		if _, dup := env[name]; !dup {
			names = append(names, name)
		}
		env[name] = val
	}
	sort.Strings(names)
	for _, name := range names {
		val := env[name]
		tg, ok := t.names[name]
		if base, isFile := strings.CutSuffix(name, EnvFileSuffix); !ok && isFile && t.names[base].key.Path != "" {
			probs = append(probs, Problem{Key: t.names[base].key.Path, Msg: fmt.Sprintf("only secrets can be read from a file (%s); set %s itself", EnvFileSuffix, base), Where: name})
			continue
		}
		if !ok {
			rest := strings.TrimPrefix(name, EnvPrefix)
			if t.words[strings.SplitN(rest, "_", 2)[0]] {
				msg := name + " is not the name of a config key"
				if c := closest(name, t.keysNames()); c != "" {
					msg += "; did you mean " + c + "?"
				}
				probs = append(probs, Problem{Msg: msg})
			}
			continue
		}
		raw := val
		if tg.file {
			data, err := readLimited(readFile, val)
			if err != nil {
				probs = append(probs, Problem{Key: tg.key.Path, Msg: fmt.Sprintf("reading the file %s names: %v", name, err), Where: name})
				continue
			}
			raw = strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
			if raw == "" {
				probs = append(probs, Problem{Key: tg.key.Path, Msg: "the file " + val + " is empty", Where: name})
				continue
			}
		}
		n, err := valueNode(tg.key, raw)
		if err != nil {
			probs = append(probs, Problem{Key: tg.key.Path, Msg: err.Error(), Where: name})
			continue
		}
		if tg.renamedFrom != "" {
			warnings = append(warnings, fmt.Sprintf("%s sets %s, which is now called %s: use %s instead (the old name will stop working in a later release)",
				name, tg.renamedFrom, tg.key.Path, EnvName(tg.key.Path)))
		}
		ovs = append(ovs, override{key: tg.key, node: n, where: name, raw: raw})
	}
	return ovs, warnings, probs
}

func (t envTable) keysNames() []string {
	out := make([]string, 0, len(t.names))
	for n, tg := range t.names {
		if !tg.legacy {
			out = append(out, n)
		}
	}
	return out
}

func readLimited(readFile func(string) ([]byte, error), path string) ([]byte, error) {
	if readFile != nil {
		return readFile(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxEnvFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxEnvFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxEnvFile)
	}
	return data, nil
}

// setOverrides reads "key=value" arguments of -set. Secrets are refused: the command line
// is visible to every user of the machine.
func setOverrides(sets []string, idx keyIndex, t envTable) (ovs []override, probs []Problem) {
	for _, s := range sets {
		path, val, ok := strings.Cut(s, "=")
		path = strings.TrimSpace(path)
		k, known := idx[path]
		switch {
		case !ok:
			probs = append(probs, Problem{Msg: fmt.Sprintf("-set %q: write it as key=value, e.g. -set matrix.homeserver=https://matrix.example.net", s)})
			continue
		case !known:
			msg := fmt.Sprintf("-set: %s is not a config key", path)
			if c := closest(path, Keys()); c != "" {
				msg += "; did you mean " + c + "?"
			}
			probs = append(probs, Problem{Msg: msg})
			continue
		case k.Secret:
			probs = append(probs, Problem{Key: path, Msg: fmt.Sprintf("holds a secret, which the command line would show to every user of the machine: put it in the config file or in %s or %s",
				EnvName(path), EnvName(path)+EnvFileSuffix), Where: "-set"})
			continue
		}
		n, err := valueNode(k, val)
		if err != nil {
			probs = append(probs, Problem{Key: path, Msg: err.Error(), Where: "-set"})
			continue
		}
		ovs = append(ovs, override{key: k, node: n, where: "-set", raw: val})
	}
	return ovs, probs
}

// valueNode turns a value given as text (an environment variable, -set) into the YAML node
// the file would hold. A string is taken as it is (no quoting needed); a list of strings is
// YAML/JSON flow (["a", "b"]) or comma-separated (a, b); other lists and mappings are YAML
// or JSON; numbers, booleans, durations and sizes are written as in the file.
func valueNode(k key, raw string) (*yaml.Node, error) {
	t := k.Type
	switch {
	case t.Kind() == reflect.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: raw}, nil
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String && !strings.HasPrefix(strings.TrimSpace(raw), "["):
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for _, part := range strings.Split(raw, ",") {
			if part = strings.TrimSpace(part); part != "" {
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: part})
			}
		}
		return n, nil
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Map:
		var doc yaml.Node
		if err := yaml.NewDecoder(bytes.NewReader([]byte(raw))).Decode(&doc); err != nil {
			return nil, fmt.Errorf("%s, not valid YAML or JSON: %s", expected(t), strings.TrimPrefix(err.Error(), "yaml: "))
		}
		n := resolveAlias(doc.Content[0])
		want := yaml.SequenceNode
		if t.Kind() == reflect.Map {
			want = yaml.MappingNode
		}
		if n.Kind != want {
			return nil, fmt.Errorf("%s, not %s", expected(t), describeNode(n, k.Secret))
		}
		return n, nil
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: raw}
	n.Tag = n.ShortTag() // resolve as a plain scalar in a file would be: 42, true, 1s
	return n, nil
}

// mapping returns the mapping under key name in m, creating it when absent; nil when the
// key holds something else.
func mapping(m *yaml.Node, name string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == name {
			v := resolveAlias(m.Content[i+1])
			if isNull(v) {
				v = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				m.Content[i+1] = v
			}
			if v.Kind != yaml.MappingNode {
				return nil
			}
			return v
		}
	}
	v := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}, v)
	return v
}

// lookup returns the value node at path under mapping m and its key node, or nils.
func lookup(m *yaml.Node, path string) (keyNode, val *yaml.Node) {
	parts := strings.Split(path, ".")
	for i, p := range parts {
		m = resolveAlias(m)
		if m == nil || m.Kind != yaml.MappingNode {
			return nil, nil
		}
		var next *yaml.Node
		for j := 0; j+1 < len(m.Content); j += 2 {
			if m.Content[j].Value == p {
				keyNode, next = m.Content[j], m.Content[j+1]
			}
		}
		if next == nil {
			return nil, nil
		}
		if i == len(parts)-1 {
			return keyNode, next
		}
		m = next
	}
	return nil, nil
}

// setNode puts val at path under mapping root, replacing what is there and creating the
// sections on the way. It reports false when a section on the way is not a mapping.
func setNode(root *yaml.Node, path string, val *yaml.Node) bool {
	parts := strings.Split(path, ".")
	m := root
	for _, p := range parts[:len(parts)-1] {
		if m = mapping(m, p); m == nil {
			return false
		}
	}
	last := parts[len(parts)-1]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == last {
			m.Content[i+1] = val
			return true
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: last}, val)
	return true
}

// applyOverrides sets every override into root, in order (a later one wins), and records
// where each node came from. Two sources that set one key to different values are a
// problem: which one should win is not for the recorder to guess.
func applyOverrides(root *yaml.Node, ovs []override, from map[*yaml.Node]string) []Problem {
	var probs []Problem
	first := map[string]override{}
	for _, o := range ovs {
		if prev, ok := first[o.key.Path]; ok && prev.where != "-set" && o.where != "-set" {
			if prev.raw != o.raw {
				probs = append(probs, Problem{Key: o.key.Path, Msg: fmt.Sprintf("set by both %s and %s, to different values; keep one", prev.where, o.where)})
			}
			continue
		}
		first[o.key.Path] = o
		if !setNode(root, o.key.Path, o.node) {
			continue // the file's own problem with that section is reported by the decoder
		}
		markFrom(o.node, o.where, from)
	}
	return probs
}

func markFrom(n *yaml.Node, where string, from map[*yaml.Node]string) {
	from[n] = where
	for _, c := range n.Content {
		markFrom(c, where, from)
	}
}

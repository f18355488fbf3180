package config

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder decodes a YAML node tree into a struct over its defaults, key by key, and
// collects every problem (unknown keys, values of the wrong type, bad durations and sizes)
// with the dotted key it is about, instead of stopping at the first as yaml.v3 does.
type decoder struct {
	problems []Problem
	// origins records where each decoded key's value came from.
	origins origins
	// failed holds the keys whose value could not be decoded (they keep their default).
	failed map[string]bool
	// from names the origin of nodes that did not come from the file (environment
	// variables, -set); other nodes are located by their line.
	from map[*yaml.Node]string
	// topKeys are the paths of every key of the root type, for "did you mean" hints about
	// a key put in the wrong section.
	topKeys []string
}

func newDecoder(root reflect.Type, from map[*yaml.Node]string) *decoder {
	d := &decoder{origins: origins{}, failed: map[string]bool{}, from: from}
	for _, k := range keysOf(root) {
		d.topKeys = append(d.topKeys, k.Path)
	}
	d.topKeys = append(d.topKeys, sectionsOf(root)...)
	return d
}

func (d *decoder) where(n *yaml.Node) string {
	if w, ok := d.from[n]; ok {
		return w
	}
	return lineOf(n.Line)
}

func (d *decoder) problem(key, msg string, n *yaml.Node) {
	d.problems = append(d.problems, Problem{Key: key, Msg: msg, Where: d.where(n)})
	d.failed[key] = true
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// pairs returns the key/value pairs of mapping n, those of merge keys (<<: *anchor) first
// so that the mapping's own keys win.
func pairs(n *yaml.Node) [][2]*yaml.Node {
	var merged, own [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
			v = resolveAlias(v)
			var srcs []*yaml.Node
			if v.Kind == yaml.SequenceNode {
				srcs = v.Content
			} else {
				srcs = []*yaml.Node{v}
			}
			for _, s := range srcs {
				if s = resolveAlias(s); s.Kind == yaml.MappingNode {
					merged = append(merged, pairs(s)...)
				}
			}
			continue
		}
		own = append(own, [2]*yaml.Node{k, v})
	}
	return append(merged, own...)
}

// section decodes mapping n into struct v; secret: the whole section may hold secrets.
func (d *decoder) section(n *yaml.Node, v reflect.Value, path string, secret bool) {
	n = resolveAlias(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		what := "the file"
		if path != "" {
			what = "this section"
		}
		d.problem(path, fmt.Sprintf("%s must hold keys (key: value, indented below it), not %s", what, describeNode(n, false)), n)
		return
	}
	fields := fieldsOf(v.Type())
	byName := make(map[string]structField, len(fields))
	names := make([]string, 0, len(fields))
	for _, f := range fields {
		byName[f.name] = f
		names = append(names, f.name)
	}
	d.duplicates(n, path)
	for _, p := range pairs(n) {
		kn, vn := p[0], p[1]
		name := kn.Value
		child := joinPath(path, name)
		f, ok := byName[name]
		if !ok {
			d.problem(child, "unknown key"+d.hint(path, name, names), kn)
			continue
		}
		d.value(vn, v.FieldByIndex(f.index), child, secret || f.field.Tag.Get("secret") == "true")
	}
}

// duplicates reports a key written twice in one mapping (yaml.v3 reports it only when
// decoding into Go values, which this decoder does key by key); the last one is used.
func (d *decoder) duplicates(n *yaml.Node, path string) {
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			d.problems = append(d.problems, Problem{Key: joinPath(path, k.Value),
				Msg: fmt.Sprintf("set twice (lines %d and %d); keep one", prev.Line, k.Line)})
		}
		seen[k.Value] = k
	}
}

// hint suggests what an unknown key name under path may have meant.
func (d *decoder) hint(path, name string, siblings []string) string {
	if c := closest(name, siblings); c != "" {
		return "; did you mean " + joinPath(path, c) + "?"
	}
	if strings.Contains(path, "[") {
		return ""
	}
	// A key of another section ("password" at the top instead of under matrix:).
	var elsewhere []string
	for _, k := range d.topKeys {
		if k == name || strings.HasSuffix(k, "."+name) {
			elsewhere = append(elsewhere, k)
		}
	}
	if len(elsewhere) == 1 {
		return "; did you mean " + elsewhere[0] + "?"
	}
	return ""
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, secret bool) {
	orig := n
	n = resolveAlias(n)
	d.origins[path] = d.where(orig)
	switch {
	case isSection(v.Type()):
		d.section(n, v, path, secret)
	case v.Kind() == reflect.Slice && isSection(v.Type().Elem()):
		d.list(n, v, path, secret)
	default:
		d.leaf(n, v, path, secret)
	}
}

// defaulter is a list entry that has defaults of its own (a LiveKit deployment).
type defaulter interface{ setDefaults() }

// list decodes a sequence of mappings into a slice of structs, each entry over its
// defaults.
func (d *decoder) list(n *yaml.Node, v reflect.Value, path string, secret bool) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.problem(path, "must be a list of entries (lines starting with \"- \"), not "+describeNode(n, secret), n)
		return
	}
	out := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	for i, e := range n.Content {
		if r := resolveAlias(e); r.Kind != yaml.MappingNode {
			// Left out: an empty entry would only add problems of its own.
			d.problem(fmt.Sprintf("%s[%d]", path, i), "must be a mapping of keys (key: value), not "+describeNode(r, secret), r)
			continue
		}
		elem := reflect.New(v.Type().Elem())
		if df, ok := elem.Interface().(defaulter); ok {
			df.setDefaults()
		}
		d.section(e, elem.Elem(), fmt.Sprintf("%s[%d]", path, i), secret)
		out = reflect.Append(out, elem.Elem())
	}
	v.Set(out)
}

// leaf decodes a scalar, a list of scalars or a mapping. A value that does not decode
// leaves the default in place.
func (d *decoder) leaf(n *yaml.Node, v reflect.Value, path string, secret bool) {
	if isNull(n) {
		return
	}
	fresh := reflect.New(v.Type())
	if u, ok := fresh.Interface().(yaml.Unmarshaler); ok && v.Kind() != reflect.Slice && v.Kind() != reflect.Map {
		// Durations, sizes, modes: scalars with messages of their own.
		if n.Kind != yaml.ScalarNode {
			d.problem(path, "must be a single value, not "+describeNode(n, secret), n)
			return
		}
		if err := u.UnmarshalYAML(n); err != nil {
			d.problem(path, err.Error(), n)
			return
		}
	} else if err := n.Decode(fresh.Interface()); err != nil {
		d.problem(path, expected(v.Type())+", not "+describeNode(n, secret), n)
		return
	}
	v.Set(fresh.Elem())
}

// expected says what a value of type t looks like, without Go type names.
func expected(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "must be true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "must be a whole number"
	case reflect.Uint16:
		return "must be a whole number from 0 to 65535"
	case reflect.Uint, reflect.Uint8, reflect.Uint32, reflect.Uint64:
		return "must be a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "must be a number"
	case reflect.String:
		return "must be a single value"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return `must be a list such as ["a", "b"]`
		}
		return "must be a list"
	case reflect.Map:
		return "must be a mapping such as {Name: value}"
	}
	return "has the wrong type"
}

// describeNode names what was written, for "must be X, not Y"; a secret's value is never
// repeated.
func describeNode(n *yaml.Node, secret bool) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if secret {
			return "the value given"
		}
		return fmt.Sprintf("%q", clip(n.Value, 60))
	}
	return "this"
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

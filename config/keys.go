package config

import (
	"reflect"
	"sort"
	"strings"
)

// A key is one settable entry of the configuration, found by reflection over the yaml tags
// of Config: a scalar, a list or a mapping that is set as a whole. Sections (structs) are
// not keys; the keys below them are.
type key struct {
	// Path is the dotted path, e.g. "storage.s3.access_key".
	Path string
	// Type is the Go type of the value.
	Type reflect.Type
	// Secret marks a value that may hold a secret (tag secret:"true"): it may be read
	// from a file (_FILE), is never echoed in messages, never written from the environment
	// into a generated config and not accepted on the command line.
	Secret bool
	// index is the field's index path from Config.
	index []int
}

// yamlName returns the field's yaml key and whether it is inlined; "" for skipped fields.
func yamlName(f reflect.StructField) (name string, inline bool) {
	if !f.IsExported() {
		return "", false
	}
	tag := f.Tag.Get("yaml")
	if tag == "-" {
		return "", false
	}
	parts := strings.Split(tag, ",")
	for _, p := range parts[1:] {
		if p == "inline" {
			return "", true
		}
	}
	if parts[0] == "" {
		return strings.ToLower(f.Name), false
	}
	return parts[0], false
}

// isSection reports whether values of t are walked key by key (a struct that is not a
// scalar type of its own).
func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct }

// fieldsOf lists the yaml keys of struct t, inlined structs flattened, in declaration
// order.
func fieldsOf(t reflect.Type) []structField {
	var out []structField
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, inline := yamlName(f)
			idx := append(append([]int(nil), index...), i)
			switch {
			case inline && f.Type.Kind() == reflect.Struct:
				walk(f.Type, idx)
			case name != "":
				out = append(out, structField{name: name, field: f, index: idx})
			}
		}
	}
	walk(t, nil)
	return out
}

type structField struct {
	name  string
	field reflect.StructField
	index []int
}

// keysOf lists every key of the struct type t, sections flattened, in declaration order.
// Lists and mappings are keys of their own (their entries are not addressed by path).
func keysOf(t reflect.Type) []key {
	var out []key
	var walk func(t reflect.Type, prefix string, index []int, secret bool)
	walk = func(t reflect.Type, prefix string, index []int, secret bool) {
		for _, f := range fieldsOf(t) {
			path := f.name
			if prefix != "" {
				path = prefix + "." + f.name
			}
			idx := append(append([]int(nil), index...), f.index...)
			s := secret || f.field.Tag.Get("secret") == "true"
			if isSection(f.field.Type) {
				walk(f.field.Type, path, idx, s)
				continue
			}
			out = append(out, key{Path: path, Type: f.field.Type, Secret: s, index: idx})
		}
	}
	walk(t, "", nil, false)
	return out
}

// sectionsOf lists the dotted paths of the sections (structs) of t.
func sectionsOf(t reflect.Type) []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for _, f := range fieldsOf(t) {
			if !isSection(f.field.Type) {
				continue
			}
			path := f.name
			if prefix != "" {
				path = prefix + "." + f.name
			}
			out = append(out, path)
			walk(f.field.Type, path)
		}
	}
	walk(t, "")
	return out
}

// Keys lists the dotted paths of every key of the configuration, in the order of the
// example file.
func Keys() []string {
	ks := keysOf(reflect.TypeOf(Config{}))
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.Path
	}
	return out
}

// keyIndex finds keys by path.
type keyIndex map[string]key

func indexKeys(ks []key) keyIndex {
	m := make(keyIndex, len(ks))
	for _, k := range ks {
		m[k.Path] = k
	}
	return m
}

// longestKeyPrefix returns the longest path in known that s starts with, followed by the
// end of s or a character that cannot continue a key ("calls.max_tracks 0 must be..."
// gives "calls.max_tracks").
func longestKeyPrefix(s string, known map[string]bool) string {
	end := 0
	for end < len(s) {
		c := s[end]
		if c == '.' || c == '_' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			end++
			continue
		}
		break
	}
	tok := s[:end]
	for tok != "" {
		if known[tok] {
			return tok
		}
		i := strings.LastIndexByte(tok, '.')
		if i < 0 {
			return ""
		}
		tok = tok[:i]
	}
	return ""
}

// closest returns the candidates nearest to s by edit distance, if one is near enough to
// be a typo of it.
func closest(s string, candidates []string) string {
	best, bestD := "", len(s)/3+2
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	for _, c := range sorted {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

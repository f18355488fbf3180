package config

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Rename is a key that changed its name. The old name keeps working for a release: the
// file (and the old environment variable) are read as if they said the new one, with a
// warning at start, and -generate-config writes the new name.
type Rename struct {
	// Old and New are dotted paths outside lists ("calls.max_length" →
	// "recordings.max_duration").
	Old, New string
}

// renamed lists the keys renamed in this release; empty when none is.
var renamed = []Rename{}

// applyRenames moves every old key of root to its new place before decoding, so the strict
// decoder sees only current names.
func applyRenames(root *yaml.Node, renames []Rename) (warnings []string, probs []Problem) {
	for _, r := range renames {
		oldKey, oldVal := lookup(root, r.Old)
		if oldKey == nil {
			continue
		}
		if newKey, _ := lookup(root, r.New); newKey != nil {
			probs = append(probs, Problem{Key: r.Old, Msg: fmt.Sprintf("%s is the old name of %s, which is set too (line %d); remove %s",
				r.Old, r.New, newKey.Line, r.Old), Where: lineOf(oldKey.Line)})
			continue
		}
		removeKey(root, r.Old)
		// The key node moves with its comments; only its name changes.
		oldKey.Value = r.New[strings.LastIndexByte(r.New, '.')+1:]
		setNodeWithKey(root, r.New, oldKey, oldVal)
		warnings = append(warnings, fmt.Sprintf("config key %s is now called %s: rename it (%s); the old name will stop working in a later release",
			r.Old, r.New, lineOf(oldKey.Line)))
	}
	return warnings, probs
}

// removeKey deletes the pair at path.
func removeKey(root *yaml.Node, path string) {
	parent := root
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		_, parent = lookup(root, path[:i])
		parent = resolveAlias(parent)
		path = path[i+1:]
	}
	if parent == nil || parent.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(parent.Content); i += 2 {
		if parent.Content[i].Value == path {
			parent.Content = append(parent.Content[:i], parent.Content[i+2:]...)
			return
		}
	}
}

// setNodeWithKey is setNode with the key node given.
func setNodeWithKey(root *yaml.Node, path string, k, v *yaml.Node) {
	parts := strings.Split(path, ".")
	m := root
	for _, p := range parts[:len(parts)-1] {
		if m = mapping(m, p); m == nil {
			return
		}
	}
	m.Content = append(m.Content, k, v)
}

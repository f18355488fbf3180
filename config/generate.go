package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"

	"gopkg.in/yaml.v3"
)

// Generated is a config file written by Generate.
type Generated struct {
	// Data is the file: the annotated example with the values filled in.
	Data []byte
	// Kept lists the keys whose value came from the existing file, the environment or -set.
	Kept []string
	// FromEnv lists the secrets set in the environment: they stay there and are not
	// written into the file.
	FromEnv []string
	// Warnings are renamed keys that were written under their new names.
	Warnings []string
}

// Generate writes the annotated example config (comments and all) with the operator's
// values in place of the example's. existing is a config file to upgrade (nil for a new
// one): every value it sets is kept (renamed keys under their new names), every other key
// reads as in the example, with its comments. Values from the environment and -set (o)
// are filled in too, except secrets from the environment, which stay there.
//
// A file with unknown keys or values of the wrong type is not upgraded (they would be
// lost); the *Error lists them.
func Generate(existing []byte, source string, o Options) (*Generated, error) {
	var exDoc yaml.Node
	if err := yaml.Unmarshal(Example, &exDoc); err != nil || len(exDoc.Content) == 0 {
		return nil, fmt.Errorf("the embedded example does not parse: %v", err)
	}
	exRoot := exDoc.Content[0]
	// Secrets from the environment are not written out.
	envOnly := o
	envOnly.Environ = nil
	st, err := decodeAll(existing, envOnly)
	if err != nil {
		return nil, &Error{Source: source, Problems: []Problem{{Msg: err.Error()}}}
	}
	ks := keysOf(reflect.TypeOf(Config{}))
	table := newEnvTable(ks, o.renameTable())
	envOvs, _, envProbs := envOverrides(o.Environ, table, o.ReadFile)
	probs := append(st.problems, envProbs...)
	if len(probs) > 0 {
		return nil, &Error{Source: source, Problems: probs}
	}
	g := &Generated{Warnings: st.warnings}
	var public []override
	for _, ov := range envOvs {
		if ov.key.Secret {
			g.FromEnv = append(g.FromEnv, ov.key.Path)
			continue
		}
		public = append(public, ov)
	}
	// -set wins over the environment; the file's values are under both.
	if p := applyOverrides(st.root, append(public, setOvsOf(o, ks, table)...), map[*yaml.Node]string{}); len(p) > 0 {
		return nil, &Error{Source: source, Problems: p}
	}
	for _, k := range ks {
		_, v := lookup(st.root, k.Path)
		if v == nil {
			continue
		}
		exKey, exVal := lookup(exRoot, k.Path)
		if exKey == nil {
			setNode(exRoot, k.Path, plainCopy(v))
		} else {
			// A value from the environment or -set (no line) is quoted as the example
			// quotes it; the file's keep their own style.
			fill(exVal, plainCopy(v), v.Line == 0)
		}
		g.Kept = append(g.Kept, k.Path)
	}
	sort.Strings(g.FromEnv)
	g.Data, err = encodeSections(exDoc.HeadComment, exRoot)
	if err != nil {
		return nil, err
	}
	return g, nil
}

func setOvsOf(o Options, ks []key, t envTable) []override {
	ovs, _ := setOverrides(o.Set, indexKeys(ks), t) // problems were reported by decodeAll
	return ovs
}

// fill puts the operator's value v into the example's node dst, keeping the example's
// comments (and the operator's own comment on the line, if any).
func fill(dst, v *yaml.Node, exampleStyle bool) {
	head, line, foot, style := dst.HeadComment, dst.LineComment, dst.FootComment, dst.Style
	*dst = *v
	if exampleStyle && v.Kind == yaml.ScalarNode && v.Style == 0 && v.Tag == "!!str" && style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		dst.Style = style
	}
	dst.HeadComment, dst.FootComment = head, foot
	if v.LineComment == "" {
		dst.LineComment = line
	}
}

// plainCopy copies n deeply with aliases resolved and anchors dropped, so a value can be
// moved into another document.
func plainCopy(n *yaml.Node) *yaml.Node {
	n = resolveAlias(n)
	c := *n
	c.Anchor, c.Alias = "", nil
	c.Line, c.Column = 0, 0
	if c.Kind == yaml.ScalarNode && c.Tag == "" {
		c.Tag = c.ShortTag()
	}
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, e := range n.Content {
		c.Content[i] = plainCopy(e)
	}
	return &c
}

// encodeSections writes a top-level mapping as the example is laid out: two-space
// indentation and a blank line between sections.
func encodeSections(head string, root *yaml.Node) ([]byte, error) {
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("not a mapping")
	}
	var out bytes.Buffer
	if head != "" {
		out.WriteString(head + "\n\n")
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if i > 0 {
			out.WriteByte('\n')
		}
		var b bytes.Buffer
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		one := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: root.Content[i : i+2]}
		if err := enc.Encode(one); err != nil {
			return nil, fmt.Errorf("write %s: %w", root.Content[i].Value, err)
		}
		if err := enc.Close(); err != nil {
			return nil, err
		}
		out.Write(b.Bytes())
	}
	return out.Bytes(), nil
}

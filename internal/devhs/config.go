package devhs

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// edit sets one key of the config, by dotted path.
type edit struct {
	path  string
	value any
}

// editConfig applies edits to a YAML document, keeping every other key and
// the order of keys as generate-config wrote them. Missing maps on the path
// are created.
func editConfig(doc []byte, edits []edit) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, fmt.Errorf("parsing generated dendrite config: %w", err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("generated dendrite config is not a YAML mapping")
	}
	for _, e := range edits {
		var value yaml.Node
		if err := value.Encode(e.value); err != nil {
			return nil, fmt.Errorf("encoding dendrite config value for %s: %w", e.path, err)
		}
		if err := setPath(root.Content[0], strings.Split(e.path, "."), &value); err != nil {
			return nil, fmt.Errorf("setting dendrite config key %s: %w", e.path, err)
		}
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, fmt.Errorf("writing dendrite config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("writing dendrite config: %w", err)
	}
	return out.Bytes(), nil
}

func setPath(m *yaml.Node, path []string, value *yaml.Node) error {
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("%q is inside a non-mapping node", path[0])
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != path[0] {
			continue
		}
		if len(path) == 1 {
			m.Content[i+1] = value
			return nil
		}
		return setPath(m.Content[i+1], path[1:], value)
	}
	key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[0]}
	if len(path) == 1 {
		m.Content = append(m.Content, key, value)
		return nil
	}
	child := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, key, child)
	return setPath(child, path[1:], value)
}

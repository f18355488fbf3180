package config

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with the configuration.
type Problem struct {
	// Key is the dotted key the problem is about ("calls.max_duration"); empty when it is
	// about no single key.
	Key string
	// Msg says what is wrong. It names Key itself when it is not empty.
	Msg string
	// Where says where the value came from: "line 12", an environment variable's name,
	// "-set"; empty when unknown.
	Where string
}

func (p Problem) String() string {
	s := p.Msg
	if p.Key != "" && !strings.HasPrefix(s, p.Key) {
		s = p.Key + ": " + s
	}
	if p.Where != "" {
		s += " (" + p.Where + ")"
	}
	return s
}

// Error lists every problem of a configuration at once.
type Error struct {
	// Source is the file (or "the configuration").
	Source   string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	if len(e.Problems) == 1 {
		fmt.Fprintf(&b, "%s: %s", e.Source, e.Problems[0])
		return b.String()
	}
	fmt.Fprintf(&b, "%s has %d problems:", e.Source, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.String())
	}
	return b.String()
}

// origins says where each key's value came from, for messages.
type origins map[string]string

// where returns the origin of key or of the list it is an entry of.
func (o origins) where(key string) string {
	if w, ok := o[key]; ok {
		return w
	}
	if i := strings.IndexByte(key, '['); i > 0 {
		return o[key[:i]]
	}
	return ""
}

func lineOf(line int) string {
	if line <= 0 {
		return ""
	}
	return fmt.Sprintf("line %d", line)
}

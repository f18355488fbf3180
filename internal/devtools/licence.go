package devtools

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
)

// AGPLModule is a module the harness never builds: the project is Apache-2.0, meant to be
// embedded and shipped, and takes no AGPL code in any role, not even as a server that only
// the tests or the demo run.
type AGPLModule struct {
	// Path is the module path; the module's packages (Path + "/...") count too, other
	// modules that merely start with the same text (github.com/minio/minio-go) do not.
	Path string
	// Licence says what it is licensed under.
	Licence string
	// Instead is what the project uses in its place.
	Instead string
}

// AGPLModules are the modules a tool pin must not name.
var AGPLModules = []AGPLModule{
	{Path: "github.com/element-hq/dendrite", Licence: "AGPL-3.0 (Element's fork, every release since v0.14)",
		Instead: "github.com/matrix-org/dendrite v0.13.8, the last Apache-2.0 release"},
	{Path: "github.com/minio/minio", Licence: "AGPL-3.0 (the MinIO server; its client github.com/minio/minio-go is Apache-2.0 and stays)",
		Instead: "github.com/versity/versitygw (Apache-2.0; internal/devs3 runs it)"},
	{Path: "github.com/element-hq/lk-jwt-service", Licence: "AGPL-3.0",
		Instead: "internal/devjwt, which serves its protocol"},
	{Path: "github.com/element-hq/synapse", Licence: "AGPL-3.0",
		Instead: "github.com/matrix-org/dendrite v0.13.8"},
}

// LicenceError says which AGPL module a tool pin names, where, and why that is refused.
type LicenceError struct {
	Tool   string
	Where  string // a file of the tool's embedded module, or the Tool description
	Module string // the path as it is named there
	AGPL   AGPLModule
}

func (e *LicenceError) Error() string {
	return fmt.Sprintf("tool %s: %s names %s, which is %s. matrix-recorder is Apache-2.0 and builds "+
		"no AGPL code in any role, not even a server only the tests or the demo run (the list is "+
		"devtools.AGPLModules). Use instead: %s", e.Tool, e.Where, e.Module, e.AGPL.Licence, e.AGPL.Instead)
}

// agplModule reports whether path is one of AGPLModules or a package of one.
func agplModule(path string) (AGPLModule, bool) {
	path = strings.ToLower(path) // GitHub paths are case-insensitive
	for _, m := range AGPLModules {
		if path == m.Path || strings.HasPrefix(path, m.Path+"/") {
			return m, true
		}
	}
	return AGPLModule{}, false
}

// CheckLicence refuses a tool whose description or embedded module names an AGPL module.
// Ensure runs it before it looks at the cache or builds anything.
func CheckLicence(tool Tool) error {
	names := append([]string{}, tool.Packages...)
	if tool.Source != nil {
		names = append(names, tool.Source.Module)
	}
	for _, n := range names {
		if m, ok := agplModule(n); ok {
			return &LicenceError{Tool: tool.Name, Where: "its description in devtools", Module: n, AGPL: m}
		}
	}
	files := map[string][]byte{}
	for _, f := range moduleFiles() {
		data, err := modules.ReadFile("modules/" + tool.Name + "/" + f[0])
		if err != nil {
			continue // a tool without an embedded module fails later, in moduleSum
		}
		files[f[0]] = data
	}
	return checkModuleFiles(tool.Name, files)
}

// CheckEmbeddedLicences checks every embedded tool module, whether or not Lookup knows it,
// so that a pin fails the test command before the first build.
func CheckEmbeddedLicences() error {
	dirs, err := fs.ReadDir(modules, "modules")
	if err != nil {
		return fmt.Errorf("reading the embedded tool modules: %w", err)
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		files := map[string][]byte{}
		for _, f := range moduleFiles() {
			if data, err := modules.ReadFile("modules/" + d.Name() + "/" + f[0]); err == nil {
				files[f[0]] = data
			}
		}
		if err := checkModuleFiles(d.Name(), files); err != nil {
			return err
		}
	}
	for _, name := range Names() {
		tool, err := Lookup(name)
		if err != nil {
			return err
		}
		if err := CheckLicence(tool); err != nil {
			return err
		}
	}
	return nil
}

// checkModuleFiles looks for AGPL modules in a tool module's files (by embedded name):
// every module path in go.mod (require, replace and the rest), every import in tools.go,
// and every module in go.sum whose source was downloaded (lines without "/go.mod": a
// module only consulted for its requirements is not built).
func checkModuleFiles(tool string, files map[string][]byte) error {
	for _, name := range []string{"go.mod.txt", "tools.go.txt", "go.sum.txt"} {
		data, ok := files[name]
		if !ok {
			continue
		}
		for _, p := range modulePaths(name, data) {
			if m, bad := agplModule(p.path); bad {
				return &LicenceError{Tool: tool, Where: fmt.Sprintf("modules/%s/%s line %d", tool, name, p.line), Module: p.path, AGPL: m}
			}
		}
	}
	return nil
}

type named struct {
	path string
	line int
}

var quoted = regexp.MustCompile(`"([^"\s]+)"`)

func modulePaths(file string, data []byte) []named {
	var out []named
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch file {
		case "go.sum.txt":
			f := strings.Fields(line)
			if len(f) >= 2 && !strings.HasSuffix(f[1], "/go.mod") {
				out = append(out, named{f[0], n})
			}
		case "tools.go.txt":
			for _, m := range quoted.FindAllStringSubmatch(line, -1) {
				out = append(out, named{m[1], n})
			}
		default: // go.mod
			if i := strings.Index(line, "//"); i >= 0 {
				line = line[:i]
			}
			for _, f := range strings.Fields(line) {
				out = append(out, named{strings.Trim(f, `"()`), n})
			}
		}
	}
	return out
}

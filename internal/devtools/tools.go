// Package devtools builds the pinned Go programs the test harness and the demo
// run (Dendrite, versitygw, livekit-server, LiveKit Egress) once per version and
// caches the binaries. Every one of them is Apache-2.0; licence.go refuses pins of
// AGPL modules before anything is built.
package devtools

import (
	"fmt"
	"sort"
	"time"
)

// Tool names accepted by Lookup and the ensure-tools command.
const (
	Dendrite      = "dendrite"
	VersityGW     = "versitygw"
	LiveKitServer = "livekit-server"
	Egress        = "egress"
)

// Tool describes one program built from a throw-away module embedded under
// modules/<Name>/ (go.mod.txt, go.sum.txt, tools.go.txt).
type Tool struct {
	// Name is the tool's name and the folder of its module under modules/.
	Name string
	// Version is the pinned version; the cache folder is <Name>-<Version>.
	Version string
	// Packages are the main packages given to go install.
	Packages []string
	// Binaries are the file names go install produces, checked before a
	// cached build is trusted.
	Binaries []string
	// CGO says whether the build needs cgo (and so a C compiler).
	CGO bool
	// NoSumDB lists module path patterns for GONOSUMDB (empty for none).
	NoSumDB []string
	// BuildTime is a rough cold build time on two cores, for the log.
	BuildTime time.Duration
	// Source, when set, builds one module from a changed copy of its source.
	Source *SourceCopy
	// Check, when set, runs before a build and explains what the machine lacks.
	Check func() error
}

// Lookup returns the tool with the given name.
func Lookup(name string) (Tool, error) {
	switch name {
	case Dendrite:
		return Tool{
			Name:    Dendrite,
			Version: "v0.13.8",
			Packages: []string{
				"github.com/matrix-org/dendrite/cmd/dendrite",
				"github.com/matrix-org/dendrite/cmd/generate-keys",
				"github.com/matrix-org/dendrite/cmd/generate-config",
				"github.com/matrix-org/dendrite/cmd/create-account",
			},
			Binaries:  []string{"dendrite", "generate-keys", "generate-config", "create-account"},
			CGO:       true,
			BuildTime: 3 * time.Minute,
		}, nil
	case VersityGW:
		// The S3 server of the tests (Apache-2.0; MinIO, which the tests used
		// before, is AGPL). v1.8.0 is the version the module proxy lists here.
		return Tool{
			Name:      VersityGW,
			Version:   "v1.8.0",
			Packages:  []string{"github.com/versity/versitygw/cmd/versitygw"},
			Binaries:  []string{"versitygw"},
			BuildTime: 3 * time.Minute,
		}, nil
	case LiveKitServer:
		return Tool{
			Name:    LiveKitServer,
			Version: "v1.13.5",
			// Later versions carry replace directives whose targets the
			// module proxy refuses; v1.13.5 is the newest that builds here.
			Packages:  []string{"github.com/livekit/livekit-server/cmd/server"},
			Binaries:  []string{"server"},
			BuildTime: 6 * time.Minute,
		}, nil
	case Egress:
		return egressTool(), nil
	default:
		return Tool{}, fmt.Errorf("unknown tool %q (known: %v)", name, Names())
	}
}

// Names lists the known tools, sorted.
func Names() []string {
	names := []string{Dendrite, VersityGW, LiveKitServer, Egress}
	sort.Strings(names)
	return names
}

// key is the tool's cache folder name.
func (t Tool) key() string { return t.Name + "-" + t.Version }

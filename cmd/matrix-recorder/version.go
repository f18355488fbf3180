package main

import (
	"runtime/debug"
	"strings"
)

// version, when set at build time (-ldflags "-X main.version=..."), names the build
// instead of the module version (packagers whose builds carry none).
var version string

// buildVersion is what the binary knows about its own build.
type buildVersion struct {
	// Version is the main module's version ("v1.2.0", or a pseudo-version for a build
	// from a checkout), "(devel)" when the build has none, or main.version when set.
	Version string
	// Revision, Time and Modified come from the version control system of the checkout
	// the binary was built in (go build stamps them), if any.
	Revision string
	Time     string
	Modified bool
	// Go is the Go version it was built with.
	Go string
}

// currentVersion reads the build information of the running binary.
func currentVersion() buildVersion {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		info = nil
	}
	return versionOf(info, version)
}

// versionOf reads info (nil: none) and the -X override.
func versionOf(info *debug.BuildInfo, override string) buildVersion {
	v := buildVersion{Version: "(devel)"}
	if info != nil {
		v.Go = info.GoVersion
		if info.Main.Version != "" {
			v.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if override != "" {
		v.Version = override
	}
	return v
}

// released reports whether the version names a release or a pseudo-version (which holds
// the revision already).
func (v buildVersion) released() bool {
	return v.Version != "(devel)" && strings.HasPrefix(v.Version, "v")
}

// Short is the version for manifests and the bot's messages: "v1.2.0", or "(devel)" with
// the revision ("(devel) 0123456789ab+modified").
func (v buildVersion) Short() string {
	if v.released() || v.Revision == "" {
		return v.Version
	}
	s := v.Version + " " + shortRevision(v.Revision)
	if v.Modified {
		s += "+modified"
	}
	return s
}

// String is the whole story, for -version: "v1.2.0 (go1.26.1)" or
// "(devel) 0123456789ab+modified 2026-12-01T10:00:00Z (go1.26.1)".
func (v buildVersion) String() string {
	s := v.Short()
	if !v.released() && v.Time != "" {
		s += " " + v.Time
	}
	if v.Go != "" {
		s += " (" + v.Go + ")"
	}
	return s
}

func shortRevision(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}

// Package buildinfo says which build of a binary is running, from the
// build information the Go toolchain embeds (runtime/debug.ReadBuildInfo):
// what -version prints and cblink_build_info carries.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// Info is what the toolchain recorded of a build. A field it did not
// record is "unknown".
type Info struct {
	// Version is the main module's version: a tag (v1.2.3), a
	// pseudo-version for a build from a clone (with "+dirty" when the tree
	// had changes), or "(devel)".
	Version string
	// Revision is the VCS commit the binary was built from, with
	// "-modified" when the tree had uncommitted changes.
	Revision string
	// GoVersion is the Go toolchain that built it (go1.26.0).
	GoVersion string
}

// Read returns the running binary's Info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown", Revision: "unknown", GoVersion: "unknown"}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Version: bi.Main.Version, Revision: "unknown", GoVersion: bi.GoVersion}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && i.Revision != "unknown" {
		i.Revision += "-modified"
	}
	for _, p := range []*string{&i.Version, &i.GoVersion} {
		if *p == "" {
			*p = "unknown"
		}
	}
	return i
}

// String is the line -version prints for program prog.
func (i Info) String(prog string) string {
	return fmt.Sprintf("%s version %s, revision %s, built with %s", prog, i.Version, i.Revision, i.GoVersion)
}

package buildinfo

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/cblink/cblink", Version: "v0.0.0-20261206120000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}}}
	i := fromBuildInfo(bi)
	assert.Equal(t, Info{Version: "v0.0.0-20261206120000-0123456789ab+dirty", Revision: "0123456789abcdef-modified", GoVersion: "go1.26.0"}, i)
	assert.Equal(t, "cblink-x version v0.0.0-20261206120000-0123456789ab+dirty, revision 0123456789abcdef-modified, built with go1.26.0", i.String("cblink-x"))

	// Built outside a VCS checkout (go install module@version).
	bi = &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/cblink/cblink", Version: "v1.2.3"}}
	assert.Equal(t, Info{Version: "v1.2.3", Revision: "unknown", GoVersion: "go1.26.0"}, fromBuildInfo(bi))
	assert.Equal(t, Info{Version: "unknown", Revision: "unknown", GoVersion: "unknown"}, fromBuildInfo(&debug.BuildInfo{}))
}

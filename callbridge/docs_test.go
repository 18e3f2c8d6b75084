package callbridge

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReliabilityDocListsPermanentKinds: docs/reliability.md names
// exactly the kinds ErrorKind.Permanent says are permanent.
func TestReliabilityDocListsPermanentKinds(t *testing.T) {
	doc, err := os.ReadFile("../docs/reliability.md")
	require.NoError(t, err)
	m := regexp.MustCompile(`The permanent kinds \(([^;)]*)`).FindSubmatch(doc)
	require.NotNil(t, m, "docs/reliability.md lost its sentence on the permanent kinds")
	var listed []string
	for _, k := range strings.Split(strings.ReplaceAll(string(m[1]), "\n", " "), ",") {
		listed = append(listed, strings.TrimPrefix(strings.TrimSpace(k), "and "))
	}
	var want []string
	for _, k := range ErrorKinds() {
		if k.Permanent() {
			want = append(want, string(k))
		}
	}
	assert.ElementsMatch(t, want, listed)
}

package logformat

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheck(t *testing.T) {
	assert.NoError(t, Check("text"))
	assert.NoError(t, Check("json"))
	for _, bad := range []string{"", "xml", "JSON", " text"} {
		err := Check(bad)
		require.Error(t, err, "%q", bad)
		assert.Contains(t, err.Error(), "is neither text nor json")
		_, err = New(bad, false, nil)
		assert.Error(t, err, "%q", bad)
	}
}

func TestNew(t *testing.T) {
	var b strings.Builder
	log, err := New("json", false, &b)
	require.NoError(t, err)
	log.Debug("hidden")
	log.Info("waiting", "backoff", 1500*time.Millisecond)
	assert.Contains(t, b.String(), `"backoff_seconds":1.5`)
	assert.NotContains(t, b.String(), "hidden")

	b.Reset()
	log, err = New("text", true, &b)
	require.NoError(t, err)
	log.Debug("shown", "backoff", 1500*time.Millisecond)
	assert.Contains(t, b.String(), "level=DEBUG msg=shown backoff=1.5s")
}

package calls

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	d, err := Parse([]byte("# call passcode name\n\n100 1234 Weekly sync\n  200\t-  \n300 0000\n"))
	require.NoError(t, err)
	assert.Equal(t, Directory{
		"100": {ID: "100", Passcode: "1234", Name: "Weekly sync"},
		"200": {ID: "200"},
		"300": {ID: "300", Passcode: "0000"},
	}, d)
	for _, bad := range []string{"", "# only a comment\n", "100\n", "100 1\n100 2\n", "100 \xff\n"} {
		_, err := Parse([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

// TestLoad: the error names the file and the line, never a passcode.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	require.NoError(t, os.WriteFile(good, []byte("100 zq-pass-71 Weekly sync\n"), 0o600))
	d, err := Load(good)
	require.NoError(t, err)
	assert.Equal(t, Directory{"100": {ID: "100", Passcode: "zq-pass-71", Name: "Weekly sync"}}, d)

	dup := filepath.Join(dir, "dup")
	require.NoError(t, os.WriteFile(dup, []byte("100 zq-pass-71\n100 zq-pass-72\n"), 0o600))
	_, err = Load(dup)
	require.Error(t, err)
	assert.Equal(t, dup+": line 2: call 100 listed twice", err.Error())

	_, err = Load(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	big := filepath.Join(dir, "big")
	require.NoError(t, os.WriteFile(big, []byte(strings.Repeat("# padding\n", MaxFile/10+1)), 0o600))
	_, err = Load(big)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "larger than")
}

package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestREADMEShowsThisProgram keeps the "Use it from Go" section of the
// top-level README identical to this program, which the build checks.
func TestREADMEShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "## Use it from Go")
	require.True(t, ok, "README has no \"Use it from Go\" section")
	section, _, _ = strings.Cut(section, "\n## ")

	var indented []string
	for _, line := range strings.Split(string(src), "\n") {
		if line == "" {
			indented = append(indented, "")
		} else {
			indented = append(indented, "    "+line)
		}
	}
	assert.Contains(t, section, strings.TrimRight(strings.Join(indented, "\n"), "\n"))
}

// TestREADMESetUp: the README's set-up section states the Go version
// go.mod requires and keeps exactly two commands for a fresh machine: the
// demo and the tests.
func TestREADMESetUp(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	gomod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(gomod))
	require.NotNil(t, m, "go.mod has no go directive")
	_, section, ok := strings.Cut(string(readme), "## Set up on a fresh machine")
	require.True(t, ok, "README has no \"Set up on a fresh machine\" section")
	section, _, _ = strings.Cut(section, "\n## ")
	assert.Contains(t, section, "Go "+m[1]+"."+m[2]+" or later")
	assert.Contains(t, section, "https://go.dev/dl/")
	var cmds []string
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "    ") {
			cmds = append(cmds, strings.TrimSpace(line))
		}
	}
	assert.Equal(t, []string{"go run ./examples/callbridge -demo", "go test ./..."}, cmds)
}

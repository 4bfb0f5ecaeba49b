// Package tshark runs Wireshark's command-line dissector for the tests
// that check what we write against an independent decoder.
package tshark

import (
	"bytes"
	"os/exec"
	"testing"
)

// Tshark is the tshark binary, for one test.
type Tshark struct {
	t    testing.TB
	path string
}

// New finds tshark on PATH, or skips the test when it is not installed
// (CI installs it).
func New(t testing.TB) *Tshark {
	t.Helper()
	path, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark is not on PATH (CI installs it: apt-get install tshark)")
	}
	return &Tshark{t: t, path: path}
}

// Output runs tshark with args and returns its standard output; it fails
// the test, with tshark's standard error, when tshark fails.
func (s *Tshark) Output(args ...string) []byte {
	s.t.Helper()
	cmd := exec.Command(s.path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("tshark %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

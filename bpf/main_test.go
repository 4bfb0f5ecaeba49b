package bpf

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestMain fails the run when the tests leak sockets or BPF objects (fds
// the Go runtime opens for itself, like its netpoller, do not count).
func TestMain(m *testing.M) {
	before := kernelFDs()
	code := m.Run()
	if code == 0 {
		for fd, what := range kernelFDs() {
			if _, ok := before[fd]; !ok {
				fmt.Fprintf(os.Stderr, "leaked fd %s: %s\n", fd, what)
				code = 1
			}
		}
	}
	os.Exit(code)
}

func kernelFDs() map[string]string {
	fds := map[string]string{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fds
	}
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && (strings.HasPrefix(l, "socket:") || strings.HasPrefix(l, "anon_inode:bpf")) {
			fds[e.Name()] = l
		}
	}
	return fds
}

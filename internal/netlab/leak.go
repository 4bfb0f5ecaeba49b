package netlab

import (
	"fmt"
	"os"
	"strings"
)

// Runner is the part of testing.M that RunCheckingFDs needs.
type Runner interface{ Run() int }

// RunCheckingFDs runs a package's tests and fails the run when they leak
// kernel objects: sockets and BPF objects (fds the Go runtime opens for
// itself, like its netpoller, do not count). Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(netlab.RunCheckingFDs(m)) }
func RunCheckingFDs(m Runner) int {
	before := KernelFDs()
	code := m.Run()
	if code == 0 {
		for fd, what := range KernelFDs() {
			if _, ok := before[fd]; !ok {
				fmt.Fprintf(os.Stderr, "leaked fd %s: %s\n", fd, what)
				code = 1
			}
		}
	}
	return code
}

// KernelFDs returns the process's socket and BPF fds (fd number -> link).
func KernelFDs() map[string]string {
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

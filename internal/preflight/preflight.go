// Package preflight checks a host against a feed config before the handler
// runs there: the settings docs/TUNING.md and docs/OPERATIONS.md ask for
// (isolated cores, interrupts, huge pages, locked memory, capabilities,
// socket buffers, the shared-memory file), read from /proc and /sys and
// from this process's own limits. `feedhandler check` prints the findings.
//
// A check reads; it changes nothing on the host, starts no backend and
// sends nothing.
package preflight

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Level grades a finding.
type Level int

const (
	OK   Level = iota // as advised
	Warn              // the handler runs, slower or less safe than it could
	Fail              // the handler would not start, or would run without what the config asks
)

func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	}
	return "FAIL"
}

// Finding is one check's result.
type Finding struct {
	Level Level
	Topic string // "cores", "irq", "memlock", ...
	Msg   string
	// Config: a FAIL that run refuses as a config error, exit 78, which
	// no restart fixes (a capability, a limit, a driver's feature the
	// file asks for); feedhandler check then exits 78 too. Not set for a
	// FAIL a restart may clear (exit 1: a live writer, a port in use, a
	// full /dev/shm, an XDP program attached), nor for one run starts
	// through without what the file asks (SCHED_FIFO refused).
	Config bool
}

func (f Finding) String() string { return fmt.Sprintf("%-4s  %-9s %s", f.Level, f.Topic, f.Msg) }

// Worst is the highest level among fs (OK for none).
func Worst(fs []Finding) Level {
	w := OK
	for _, f := range fs {
		w = max(w, f.Level)
	}
	return w
}

// Host is where the files a check reads come from.
type Host struct {
	// Root is prefixed to the /proc and /sys paths the checks of this
	// package read: "" or "/" reads the host's. Process state
	// (capabilities, limits, CPU affinity, SCHED_FIFO, the /dev/shm file
	// system, listening ports) is always this process's, and so are the
	// host reads of other packages: transparent huge pages (book), real-time
	// throttling (feed/handler) and the clock (internal/clock).
	Root string
}

func (h Host) path(p string) string { return filepath.Join(h.Root, p) }

// read returns a file's contents, trimmed; ok is false when it cannot be
// read.
func (h Host) read(p string) (string, bool) {
	b, err := os.ReadFile(h.path(p))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// readInt reads a file holding one integer.
func (h Host) readInt(p string) (int64, bool) {
	s, ok := h.read(p)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// cpuSet is a set of CPU numbers.
type cpuSet map[int]bool

// parseCPUList parses the kernel's list format ("0-3,8,10-11"); "" and
// "(null)" are the empty set.
func parseCPUList(s string) (cpuSet, error) {
	set := cpuSet{}
	s = strings.TrimSpace(s)
	if s == "" || s == "(null)" {
		return set, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %q", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cpu list %q: %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			set[c] = true
		}
	}
	return set, nil
}

// String formats the set in the kernel's list format.
func (s cpuSet) String() string {
	cpus := make([]int, 0, len(s))
	for c := range s {
		cpus = append(cpus, c)
	}
	sort.Ints(cpus)
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(cpus[i]))
		} else {
			parts = append(parts, strconv.Itoa(cpus[i])+"-"+strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// cpuList reads a file in the kernel's list format; ok is false when it
// is absent or unreadable.
func (h Host) cpuList(p string) (cpuSet, bool) {
	s, ok := h.read(p)
	if !ok {
		return nil, false
	}
	set, err := parseCPUList(s)
	return set, err == nil
}

// mib formats a byte count in MiB.
func mib(n int64) string {
	if n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

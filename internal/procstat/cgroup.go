package procstat

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// NoLimit is a memory limit that is not set ("max" in every cgroup's
// file).
const NoLimit = ^uint64(0)

// MemoryLimits are the cgroup v2 memory limits the process runs under:
// the smallest memory.max (past it the OOM killer kills in the cgroup) and
// memory.high (past it the kernel throttles and reclaims) of its cgroup
// and every ancestor the cgroup mount shows; NoLimit when none is set.
type MemoryLimits struct {
	Max, High uint64
}

// CgroupMemory reads the process's cgroup v2 memory limits (memory.max,
// memory.high) through files it keeps open: each is read again from its
// start (the kernel regenerates it), so a limit changed while the process
// runs (systemctl set-property) is the one read. Read allocates nothing.
type CgroupMemory struct {
	mu   sync.Mutex
	dir  string     // the process's cgroup directory
	max  []*os.File // memory.max of the cgroup, then of each ancestor with one
	high []*os.File
	buf  [32]byte
}

// SelfCgroupMemory returns the process's CgroupMemory, opened at the first
// call and kept for the life of the process, or why its limits cannot be
// read (OpenCgroupMemory).
var SelfCgroupMemory = sync.OnceValues(OpenCgroupMemory)

// OpenCgroupMemory opens the memory limit files of the calling process's
// cgroup (the "0::" line of /proc/self/cgroup, under the cgroup2 mount of
// /proc/self/mountinfo) and of its ancestors. It fails, saying why, where
// the limits are not cgroup v2's: the memory controller on a cgroup v1
// hierarchy (a hybrid or v1 host: memory.limit_in_bytes, not read), no
// cgroup2 mount, or a file that cannot be read. A cgroup without the
// memory controller has no limit file: no limit there.
func OpenCgroupMemory() (*CgroupMemory, error) {
	return OpenCgroupMemoryFrom("/proc/self/cgroup", "/proc/self/mountinfo")
}

// OpenCgroupMemoryFrom is OpenCgroupMemory from other files than
// /proc/self's: a process's cgroup file and a mountinfo (tests lay out a
// cgroup tree of their own so).
func OpenCgroupMemoryFrom(cgroupFile, mountinfoFile string) (*CgroupMemory, error) {
	path, err := cgroupV2Path(cgroupFile)
	if err != nil {
		return nil, err
	}
	mount, root, err := cgroup2Mount(mountinfoFile)
	if err != nil {
		return nil, err
	}
	// A mount of a subtree (a container's) shows the cgroups below its
	// root only.
	if root != "/" {
		rel, ok := strings.CutPrefix(path, root)
		if !ok || rel != "" && rel[0] != '/' {
			return nil, fmt.Errorf("procstat: cgroup %s is not under the cgroup2 mount's root %s (%s)", path, root, mount)
		}
		path = rel
	}
	c := &CgroupMemory{dir: filepath.Join(mount, path)}
	for dir := c.dir; ; dir = filepath.Dir(dir) {
		for _, f := range [...]struct {
			name string
			to   *[]*os.File
		}{{"memory.max", &c.max}, {"memory.high", &c.high}} {
			file, err := os.Open(filepath.Join(dir, f.name))
			switch {
			case errors.Is(err, fs.ErrNotExist):
				// The root cgroup, or one without the memory
				// controller: no limit of its own.
			case err != nil:
				c.Close()
				return nil, fmt.Errorf("procstat: %w", err)
			default:
				*f.to = append(*f.to, file)
			}
		}
		if dir == mount || len(dir) <= len(mount) {
			break
		}
	}
	if _, err := c.Read(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// cgroupV2Path is the process's cgroup v2 path, from /proc/self/cgroup's
// "0::PATH" line; an error where the memory controller is a v1
// hierarchy's.
func cgroupV2Path(cgroupFile string) (string, error) {
	b, err := os.ReadFile(cgroupFile)
	if err != nil {
		return "", fmt.Errorf("procstat: %w", err)
	}
	path := ""
	for _, l := range strings.Split(string(b), "\n") {
		id, rest, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		controllers, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if id == "0" && controllers == "" {
			path = p
			continue
		}
		for _, c := range strings.Split(controllers, ",") {
			if c == "memory" {
				return "", fmt.Errorf("procstat: the memory controller is on cgroup v1 (%s: %q): its limit is not read", cgroupFile, l)
			}
		}
	}
	if path == "" {
		return "", fmt.Errorf("procstat: %s has no cgroup v2 line (0::PATH)", cgroupFile)
	}
	return path, nil
}

// cgroup2Mount is the first cgroup2 mount of mountinfo: its mount point
// and the cgroup its root is.
func cgroup2Mount(mountinfoFile string) (mount, root string, err error) {
	f, err := os.Open(mountinfoFile)
	if err != nil {
		return "", "", fmt.Errorf("procstat: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		for i, v := range fields {
			if v == "-" && i >= 5 && i+1 < len(fields) && fields[i+1] == "cgroup2" {
				return unescapeMountinfo(fields[4]), unescapeMountinfo(fields[3]), nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("procstat: %s: %w", mountinfoFile, err)
	}
	return "", "", fmt.Errorf("procstat: no cgroup2 mount in %s", mountinfoFile)
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] >= '0' && s[i+1] <= '3' {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Dir is the process's cgroup directory.
func (c *CgroupMemory) Dir() string { return c.dir }

// Read returns the limits now. It allocates nothing (an error aside).
func (c *CgroupMemory) Read() (MemoryLimits, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := MemoryLimits{Max: NoLimit, High: NoLimit}
	var err error
	if l.Max, _, err = c.least(c.max); err != nil {
		return l, err
	}
	l.High, _, err = c.least(c.high)
	return l, err
}

// Max returns the smallest memory.max now and the file that sets it (""
// when none is set: NoLimit), the one of the process's cgroup or of the
// nearest ancestor at a tie.
func (c *CgroupMemory) Max() (uint64, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, i, err := c.least(c.max)
	if err != nil || i < 0 {
		return v, "", err
	}
	return v, c.max[i].Name(), nil
}

// least is the smallest limit of files and the index of the first file
// that has it (-1: none set). Under c.mu.
func (c *CgroupMemory) least(files []*os.File) (uint64, int, error) {
	least, at := NoLimit, -1
	for i, f := range files {
		n, err := unix.Pread(int(f.Fd()), c.buf[:], 0)
		if err != nil {
			return NoLimit, -1, fmt.Errorf("procstat: read %s: %w", f.Name(), err)
		}
		v, ok := parseLimit(c.buf[:n])
		if !ok {
			return NoLimit, -1, fmt.Errorf("procstat: %s: %q is no limit", f.Name(), c.buf[:n])
		}
		if v < least {
			least, at = v, i
		}
	}
	return least, at, nil
}

// parseLimit parses a memory.max or memory.high file: "max" or bytes.
func parseLimit(b []byte) (uint64, bool) {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	if string(b) == "max" {
		return NoLimit, true
	}
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		if v > (NoLimit-uint64(d-'0'))/10 {
			return 0, false
		}
		v = v*10 + uint64(d-'0')
	}
	return v, true
}

// Close closes the files.
func (c *CgroupMemory) Close() error {
	for _, f := range append(c.max, c.high...) {
		f.Close()
	}
	return nil
}

package procstat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/internal/race"
)

// cgroupTree lays out a cgroup2 mount at dir/cg as systemd's would be
// for feedhandler@nasdaq.service, with the given files (path under the
// mount -> content), and the /proc/self/cgroup and mountinfo files naming
// it; it returns their paths.
func cgroupTree(t *testing.T, cgroupLines string, files map[string]string) (cgroupFile, mountinfo, mount string) {
	t.Helper()
	dir := t.TempDir()
	mount = filepath.Join(dir, "cg")
	for p, v := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mount, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mount, p), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cgroupFile = filepath.Join(dir, "cgroup")
	mountinfo = filepath.Join(dir, "mountinfo")
	if err := os.WriteFile(cgroupFile, []byte(cgroupLines), 0o644); err != nil {
		t.Fatal(err)
	}
	mi := "22 1 0:21 / /proc rw,nosuid - proc proc rw\n" +
		"30 22 0:26 / " + mount + " rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
	if err := os.WriteFile(mountinfo, []byte(mi), 0o644); err != nil {
		t.Fatal(err)
	}
	return cgroupFile, mountinfo, mount
}

const unitCgroup = "0::/system.slice/system-feedhandler.slice/feedhandler@nasdaq.service\n"

// TestCgroupMemoryLimits: the limits are the smallest of the process's
// cgroup and its ancestors ("max": none), read again at each Read (a
// limit changed at run time is the one read), without allocating.
func TestCgroupMemoryLimits(t *testing.T) {
	unit := "system.slice/system-feedhandler.slice/feedhandler@nasdaq.service/"
	cg, mi, mount := cgroupTree(t, unitCgroup, map[string]string{
		unit + "memory.max":  "536870912\n",
		unit + "memory.high": "max\n",
		"system.slice/system-feedhandler.slice/memory.max":  "max\n",
		"system.slice/system-feedhandler.slice/memory.high": "max\n",
		"system.slice/memory.max":                           "max\n",
		"system.slice/memory.high":                          "1073741824\n",
	})
	c, err := OpenCgroupMemoryFrom(cg, mi)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if want := filepath.Join(mount, unit); c.Dir() != filepath.Clean(want) {
		t.Errorf("dir %s, want %s", c.Dir(), want)
	}
	l, err := c.Read()
	if err != nil || l != (MemoryLimits{Max: 512 << 20, High: 1 << 30}) {
		t.Errorf("limits %+v (%v), want memory.max 512 MiB (the unit's), memory.high 1 GiB (system.slice's)", l, err)
	}
	if v, file, err := c.Max(); err != nil || v != 512<<20 || file != filepath.Join(mount, unit, "memory.max") {
		t.Errorf("Max %d %q (%v), want 512 MiB, the unit's memory.max", v, file, err)
	}
	// systemctl set-property: the unit's limits changed while it runs.
	os.WriteFile(filepath.Join(mount, unit, "memory.max"), []byte("max\n"), 0o644)
	os.WriteFile(filepath.Join(mount, unit, "memory.high"), []byte("268435456\n"), 0o644)
	if l, err := c.Read(); err != nil || l != (MemoryLimits{Max: NoLimit, High: 256 << 20}) {
		t.Errorf("limits %+v (%v) after set-property, want no memory.max, memory.high 256 MiB", l, err)
	}
	if v, file, err := c.Max(); err != nil || v != NoLimit || file != "" {
		t.Errorf("Max %d %q (%v) after set-property, want none set", v, file, err)
	}
	if n, exact := race.AllocsPerRun(t, 50, func() { c.Read() }); exact && n != 0 {
		t.Errorf("Read allocates %.1f times", n)
	}
}

// TestCgroupMemoryNotExported: where the limits are not cgroup v2's files
// the opening says why: the memory controller on a v1 hierarchy (a
// hybrid host, as this project's machines are), no cgroup2 mount, a file
// that is no limit. A cgroup without the memory controller (no files) has
// none: NoLimit.
func TestCgroupMemoryNotExported(t *testing.T) {
	cg, mi, _ := cgroupTree(t, "4:memory:/process_api/x\n1:cpu:/\n0::/\n", nil)
	if _, err := OpenCgroupMemoryFrom(cg, mi); err == nil || !strings.Contains(err.Error(), "cgroup v1") {
		t.Errorf("hybrid host: %v, want the memory controller on cgroup v1", err)
	}
	cg, _, _ = cgroupTree(t, unitCgroup, nil)
	none := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(none, []byte("22 1 0:21 / /proc rw,nosuid - proc proc rw\n"), 0o644)
	if _, err := OpenCgroupMemoryFrom(cg, none); err == nil || !strings.Contains(err.Error(), "no cgroup2 mount") {
		t.Errorf("no cgroup2 mount: %v", err)
	}
	cg, mi, _ = cgroupTree(t, "0::/a\n", map[string]string{"a/memory.max": "lots\n"})
	if _, err := OpenCgroupMemoryFrom(cg, mi); err == nil || !strings.Contains(err.Error(), "is no limit") {
		t.Errorf("a memory.max of %q: %v", "lots", err)
	}
	cg, mi, _ = cgroupTree(t, "0::/a/b\n", map[string]string{"a/b/cgroup.procs": ""})
	c, err := OpenCgroupMemoryFrom(cg, mi)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if l, err := c.Read(); err != nil || l != (MemoryLimits{Max: NoLimit, High: NoLimit}) {
		t.Errorf("no memory controller: %+v %v, want no limits", l, err)
	}
}

// TestSelfCgroupMemory: this process's cgroup, as the kernel shows it:
// on a host whose memory controller is a cgroup v1 hierarchy the opening
// says so; on a cgroup v2 one it reads the cgroup's own memory.max.
func TestSelfCgroupMemory(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	v1 := false
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 && f[0] != "0" && strings.Contains(","+f[1]+",", ",memory,") {
			v1 = true
		}
	}
	c, err := OpenCgroupMemory()
	if v1 {
		if err == nil || !strings.Contains(err.Error(), "cgroup v1") {
			t.Errorf("memory controller on cgroup v1 (%q): %v, want it said", b, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("cgroup v2 (%q): %v", b, err)
	}
	defer c.Close()
	l, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	if own, err := os.ReadFile(filepath.Join(c.Dir(), "memory.max")); err == nil {
		if v, ok := parseLimit(own); !ok || l.Max > v {
			t.Errorf("memory.max %q, read %d", own, l.Max)
		}
	}
}

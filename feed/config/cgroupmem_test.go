package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCheckHostCgroupMemory: the cgroup's part of the memory the check
// allows is the smallest limit of the process's cgroup and its ancestors,
// and names the file that sets it: on cgroup v2 memory.max under the
// cgroup2 mount mountinfo shows (procstat's reader, the metric's), a
// container's subtree mount too; where the memory controller is a v1
// hierarchy, memory.limit_in_bytes (v1's near 2^63: none).
func TestCheckHostCgroupMemory(t *testing.T) {
	lay := func(dir string, files map[string]string) {
		t.Helper()
		for p, v := range files {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, p), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name, cgroup, root string // root: the cgroup2 mount's, "" no cgroup2 mount
		v2, v1             map[string]string
		have               int64
		file               string // under the v2 mount or the v1 one
	}{
		{"v2", "0::/a/b\n", "/", map[string]string{"a/b/memory.max": "max\n", "a/memory.max": "1073741824\n", "memory.max": "2147483648\n"}, nil,
			1 << 30, "v2/a/memory.max"},
		{"v2 subtree mount", "0::/pod/c\n", "/pod", map[string]string{"c/memory.max": "536870912\n", "memory.max": "max\n"}, nil,
			512 << 20, "v2/c/memory.max"},
		{"v2 none", "0::/a\n", "/", map[string]string{"a/memory.max": "max\n"}, nil, 0, ""},
		{"v1", "4:memory:/x/y\n1:cpu:/\n0::/\n", "/", nil, map[string]string{"x/y/memory.limit_in_bytes": "9223372036854771712\n", "x/memory.limit_in_bytes": "268435456\n"},
			256 << 20, "v1/x/memory.limit_in_bytes"},
		{"v1 no cgroup2", "4:memory:/x\n", "", nil, map[string]string{"x/memory.limit_in_bytes": "134217728\n"},
			128 << 20, "v1/x/memory.limit_in_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			lay(filepath.Join(dir, "v2"), tc.v2)
			lay(filepath.Join(dir, "v1"), tc.v1)
			mi := "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
			if tc.root != "" {
				mi += "30 22 0:26 " + tc.root + " " + filepath.Join(dir, "v2") + " rw,nosuid shared:9 - cgroup2 cgroup2 rw\n"
			}
			lay(dir, map[string]string{"cgroup": tc.cgroup, "mountinfo": mi})
			have, what := cgroupMemory(filepath.Join(dir, "cgroup"), filepath.Join(dir, "mountinfo"), filepath.Join(dir, "v1"))
			want := ""
			if tc.file != "" {
				want = "cgroup " + filepath.Join(dir, tc.file)
			}
			if have != tc.have || what != want {
				t.Errorf("%d (%q), want %d (%q)", have, what, tc.have, want)
			}
		})
	}
}

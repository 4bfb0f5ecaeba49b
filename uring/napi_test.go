package uring

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/internal/deathsig"
)

// fdinfo returns the kernel's /proc description of the ring's fd.
func fdinfo(t *testing.T, r *Ring) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// napiLines keeps the fdinfo lines about NAPI (Linux 6.13+ prints them).
func napiLines(info string) string {
	var keep []string
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, "NAPI") || strings.HasPrefix(l, "napi") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "; ")
}

// napiAsNobody is set in the environment of the test binary run again as
// user nobody by TestRegisterNAPI.
const napiAsNobody = "FH_URING_NAPI_AS_NOBODY"

// TestRegisterNAPI turns busy polling on and off and reads the result from
// the kernel twice: the ring's fdinfo, and the settings IORING_UNREGISTER_NAPI
// hands back. The nobody subtest runs the same as user nobody without any
// capability (docs/OPERATIONS.md: the ring's busy polling needs none).
func TestRegisterNAPI(t *testing.T) {
	if os.Getenv(napiAsNobody) != "" {
		if os.Geteuid() != 65534 {
			t.Fatalf("run as nobody, but euid %d", os.Geteuid())
		}
	} else {
		t.Run("nobody", registerNAPIAsNobody)
	}
	for _, flags := range []uint32{SetupCoopTaskrun, SetupSingleIssuer | SetupDeferTaskrun | SetupRDisabled} {
		t.Run(fmt.Sprintf("flags=%#x", flags), func(t *testing.T) {
			r := setupRing(t, Params{Entries: 4, Flags: flags})
			if err := r.RegisterNAPI(37, true); err != nil {
				if errors.Is(err, ErrNotSupported) {
					t.Skipf("the kernel lacks IORING_REGISTER_NAPI (Linux 6.9+): %v", err)
				}
				t.Fatal(err)
			}
			before := napiLines(fdinfo(t, r))
			if before != "" && !strings.Contains(before, "NAPI:\tenabled") {
				t.Errorf("after RegisterNAPI(37, true) the kernel says %q, want NAPI enabled", before)
			}
			if before != "" && (!strings.Contains(before, "napi_busy_poll_dt:\t37000") || !strings.Contains(before, "napi_prefer_busy_poll:\ttrue")) {
				t.Errorf("after RegisterNAPI(37, true) the kernel says %q, want 37000 ns, prefer", before)
			}
			usec, prefer, err := r.UnregisterNAPI()
			if err != nil {
				t.Fatal(err)
			}
			if usec != 37 || !prefer {
				t.Errorf("UnregisterNAPI returned %d µs, prefer %v; want what was registered: 37, true", usec, prefer)
			}
			if after := napiLines(fdinfo(t, r)); after != "" && !strings.Contains(after, "NAPI:\tdisabled") {
				t.Errorf("after UnregisterNAPI the kernel says %q, want NAPI disabled", after)
			}
			t.Logf("fdinfo with NAPI registered: %q", before)
		})
	}
}

// registerNAPIAsNobody runs TestRegisterNAPI again in a copy of the test
// binary as uid and gid 65534 with every capability set empty.
func registerNAPIAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to user nobody")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("no setpriv (util-linux) to drop privileges: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The go test build directory is root's alone: copy the binary
	// where nobody can run it.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "uring.test")
	if err := copyFile(self, bin); err != nil {
		t.Fatal(err)
	}
	// As nobody, the child keeps its parent-death signal only with
	// SetprivUser's --pdeathsig keep: it dies with a killed test binary.
	cmd := exec.Command(setpriv, append(deathsig.SetprivUser("65534", "65534"), "--no-new-privs",
		"--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--",
		bin, "-test.run=^TestRegisterNAPI$", "-test.count=1", "-test.v")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), napiAsNobody+"=1")
	out, err := deathsig.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("TestRegisterNAPI as nobody without capabilities: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "SKIP") {
		t.Skipf("as nobody:\n%s", out)
	}
	t.Logf("as nobody:\n%s", out)
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

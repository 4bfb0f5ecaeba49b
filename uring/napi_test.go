package uring

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
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

// TestRegisterNAPI turns busy polling on and off and reads the result from
// the kernel twice: the ring's fdinfo, and the settings IORING_UNREGISTER_NAPI
// hands back.
func TestRegisterNAPI(t *testing.T) {
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

package privilege

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCapsString(t *testing.T) {
	for c, want := range map[Caps]string{
		0:                      "none",
		NetAdmin | BPF:         "cap_net_admin,cap_bpf",
		Required("xdp", false): "cap_net_admin,cap_net_raw,cap_perfmon,cap_bpf",
		1 << 50:                "cap_50",
	} {
		if got := c.String(); got != want {
			t.Errorf("%#x: %q, want %q", uint64(c), got, want)
		}
	}
	if Required("socket", false) != 0 || Required("uring", false) != 0 || Required("socket", true) != NetAdmin {
		t.Error("uring and socket need nothing, busy polling needs cap_net_admin")
	}
}

// TestExplain: only permission errors gain the explanation, and only the
// capabilities this thread lacks are named.
func TestExplain(t *testing.T) {
	eff, err := Effective()
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Errorf("open xdp backend: %w", unix.EPERM)
	got := Explain(base, "xdp", false)
	if !errors.Is(got, unix.EPERM) {
		t.Fatalf("Explain lost the errno: %v", got)
	}
	missing := Required("xdp", false) &^ eff
	if missing == 0 {
		if got.Error() != base.Error() {
			t.Errorf("nothing missing, yet %q", got)
		}
	} else if !strings.Contains(got.Error(), "lacks "+missing.String()) {
		t.Errorf("%q does not name %s", got, missing)
	}
	other := fmt.Errorf("open: %w", unix.EINVAL)
	noBufs := fmt.Errorf("register umem: %w", unix.ENOBUFS) // rx explains it
	if Explain(other, "xdp", false) != other || Explain(noBufs, "xdp", false) != noBufs || Explain(nil, "xdp", false) != nil {
		t.Error("Explain changed a non-permission error")
	}
}

// TestThreadCaps reads every thread of this process.
func TestThreadCaps(t *testing.T) {
	eff, perm, err := ThreadCaps(0)
	if err != nil || len(eff) == 0 || len(eff) != len(perm) {
		t.Fatalf("%v %v %v", eff, perm, err)
	}
	mine, err := Effective()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && mine != 0 && eff[0] == 0 {
		t.Errorf("thread 0 of a privileged process reads as no capability")
	}
}

// TestExplainRealtime: a refused SCHED_FIFO (EPERM) gains what would allow
// it, according to what this process holds; other errors come back
// unchanged.
func TestExplainRealtime(t *testing.T) {
	eff, err := Effective()
	if err != nil {
		t.Fatal(err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_RTPRIO, &lim); err != nil {
		t.Fatal(err)
	}
	base := fmt.Errorf("sched_setattr: %w", unix.EPERM)
	got := ExplainRealtime(base, 50)
	if !errors.Is(got, unix.EPERM) {
		t.Fatalf("ExplainRealtime lost the errno: %v", got)
	}
	want := "yet the kernel refused: a seccomp filter (systemd RestrictRealtime=yes)"
	if eff&SysNice == 0 && lim.Cur < 50 {
		want = fmt.Sprintf("lacks cap_sys_nice and its RLIMIT_RTPRIO is %d: set LimitRTPRIO=50", lim.Cur)
	}
	if !strings.Contains(got.Error(), want) {
		t.Errorf("%q does not say %q", got, want)
	}
	other := fmt.Errorf("sched_setattr: %w", unix.EINVAL)
	if ExplainRealtime(other, 50) != other || ExplainRealtime(nil, 50) != nil {
		t.Error("ExplainRealtime changed a non-permission error")
	}
}

package book

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestTHPMode(t *testing.T) {
	for in, want := range map[string]string{
		"always [madvise] never\n": "madvise",
		"[always] madvise never\n": "always",
		"always madvise [never]\n": "never",
		"garbage\n":                "unknown: garbage",
		"":                         "unknown: ",
	} {
		if got := thpMode(in); got != want {
			t.Errorf("thpMode(%q) = %q, want %q", in, got, want)
		}
	}
	for _, c := range []struct{ top, pmd, want string }{
		{"always [madvise] never", "", "madvise"},                               // before Linux 6.8
		{"always [madvise] never", "always [inherit] madvise never", "madvise"}, // the size follows the top level
		{"always madvise [never]", "always inherit [madvise] never", "madvise"}, // the size's own mode decides
		{"[always] madvise never", "always inherit madvise [never]", "never"},
	} {
		if got := thpEffective(c.top, c.pmd); got != c.want {
			t.Errorf("thpEffective(%q, %q) = %q, want %q", c.top, c.pmd, got, c.want)
		}
	}
}

// TestHugePages: HugePages follows this machine's mode files, and says no
// while THP is disabled for the process.
func TestHugePages(t *testing.T) {
	top, err := os.ReadFile(thpEnabled)
	if err != nil {
		t.Skipf("no %s: %v (kernel built without transparent huge pages)", thpEnabled, err)
	}
	if d, err := unix.PrctlRetInt(unix.PR_GET_THP_DISABLE, 0, 0, 0, 0); err != nil || d == 1 {
		t.Skipf("THP disabled for this process already (PR_GET_THP_DISABLE %d, %v): inherited from whatever started the test", d, err)
	}
	pmd, _ := os.ReadFile(thpPMD)
	want := thpEffective(string(top), string(pmd))
	ok, mode := HugePages()
	if mode != want || ok != (want == "always" || want == "madvise") {
		t.Fatalf("HugePages() = %v %q; the mode files say %q", ok, mode, want)
	}
	if !ok {
		return
	}
	if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_THP_DISABLE: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_THP_DISABLE, 0, 0, 0, 0)
	if ok, mode := HugePages(); ok || !strings.Contains(mode, "PR_SET_THP_DISABLE") {
		t.Fatalf("with THP disabled for the process: HugePages() = %v %q", ok, mode)
	}
}

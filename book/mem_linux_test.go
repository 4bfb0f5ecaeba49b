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
}

// TestHugePages: HugePages follows this machine's mode file, and says no
// while THP is disabled for the process.
func TestHugePages(t *testing.T) {
	b, err := os.ReadFile(thpEnabled)
	if err != nil {
		t.Skipf("no %s: %v (kernel built without transparent huge pages)", thpEnabled, err)
	}
	want := thpMode(string(b))
	ok, mode := HugePages()
	if mode != want || ok != (want == "always" || want == "madvise") {
		t.Fatalf("HugePages() = %v %q; the mode file says %q", ok, mode, want)
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

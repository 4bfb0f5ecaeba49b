//go:build linux

package book

import (
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

const hugePage = 2 << 20

// adviseHuge asks the kernel to back the 2 MiB-aligned interior of b with
// transparent huge pages (when THP is in "madvise" or "always" mode). The
// order table is touched at random, so 4 KiB pages would cost a TLB miss
// on nearly every lookup. Best effort: errors are ignored.
func adviseHuge(b []byte) {
	if len(b) < 2*hugePage {
		return
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	skip := int((hugePage - uintptr(p)%hugePage) % hugePage)
	n := (len(b) - skip) &^ (hugePage - 1)
	if n <= 0 {
		return
	}
	_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, skip)), n), unix.MADV_HUGEPAGE)
}

// thpEnabled is the kernel's transparent huge page mode file; thpPMD is
// the 2 MiB size's own (Linux 6.8 and later), which overrides it unless it
// says "inherit".
const (
	thpEnabled = "/sys/kernel/mm/transparent_hugepage/enabled"
	thpPMD     = "/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled"
)

// HugePages reports whether the tables New allocates can be backed by
// transparent huge pages, which New asks for (MADV_HUGEPAGE): the kernel's
// mode for 2 MiB pages must be "always" or "madvise", and THP must not be
// disabled for the process (prctl PR_SET_THP_DISABLE, inherited across
// exec). mode is the kernel's mode, or why ok is false. The order table is
// reached at random: on 4 KiB pages nearly every lookup misses the TLB
// (feedhandler replay took 2.3 times as long on a generated day,
// docs/TUNING.md section 4). Tables under 4 MiB are not advised either way.
func HugePages() (ok bool, mode string) {
	top, err := os.ReadFile(thpEnabled)
	if err != nil {
		return false, "unknown: " + err.Error()
	}
	pmd, _ := os.ReadFile(thpPMD) // absent before Linux 6.8
	mode = thpEffective(string(top), string(pmd))
	if mode != "always" && mode != "madvise" {
		return false, mode
	}
	if d, err := unix.PrctlRetInt(unix.PR_GET_THP_DISABLE, 0, 0, 0, 0); err == nil && d == 1 {
		return false, mode + ", but disabled for this process (PR_SET_THP_DISABLE)"
	}
	return true, mode
}

// thpEffective is the mode for 2 MiB pages: the size's own file's unless
// it is absent ("") or says "inherit", then the top-level file's.
func thpEffective(top, pmd string) string {
	if pmd != "" {
		if m := thpMode(pmd); m != "inherit" {
			return m
		}
	}
	return thpMode(top)
}

// thpMode returns the selected mode of a transparent_hugepage/enabled file,
// the bracketed word of "always [madvise] never".
func thpMode(s string) string {
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	return "unknown: " + strings.TrimSpace(s)
}

package preflight

import (
	"strconv"
	"strings"

	"github.com/marketfeed/feedhandler/book"
)

// This file holds the checks of memory: huge pages for the books and the
// UMEMs, and what the process holds and may grow to against what it can
// have.

// meminfo reads one field of /proc/meminfo, in the unit the file gives
// (kB for sizes, a count for HugePages_*).
func (h Host) meminfo(key string) (int64, bool) {
	s, ok := h.read("/proc/meminfo")
	if !ok {
		return 0, false
	}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}

// pages: book tables can have transparent huge pages, and the UMEM
// reserved huge pages (docs/TUNING.md section 4).
func (c *checker) pages() {
	if ok, mode := book.HugePages(); ok {
		c.add(OK, "pages", "book tables can have transparent huge pages (%s)", mode)
	} else {
		c.add(Warn, "pages", "book tables on 4 KiB pages (transparent_hugepage: %s): every order lookup may miss the TLB; set /sys/kernel/mm/transparent_hugepage/enabled to madvise (docs/TUNING.md section 4)", mode)
	}
	if !c.xdp() {
		return
	}
	need := c.umemBytes()
	pool, _ := c.h.meminfo("HugePages_Total")
	freeAll, ok1 := c.h.meminfo("HugePages_Free")
	rsvd, _ := c.h.meminfo("HugePages_Rsvd") // promised to mappings, not yet faulted in
	size, ok2 := c.h.meminfo("Hugepagesize")
	if !ok1 || !ok2 || size <= 0 {
		return
	}
	free := freeAll - rsvd
	// One UMEM per interface, each rounded up to whole huge pages
	// (xsk.NewUMEM).
	n := int64(len(c.interfaces()))
	page := size << 10
	want := n * ((need/n + page - 1) / page)
	if free < want {
		c.add(Warn, "pages", "the AF_XDP UMEMs (%s, %d interface(s)) need %d huge pages of %d kB and %d are free: they fall back to normal pages (echo %d > /proc/sys/vm/nr_hugepages, or more, docs/TUNING.md section 4)",
			mib(need), n, want, size, free, pool-free+want)
	} else {
		c.add(OK, "pages", "%d huge pages of %d kB free for the AF_XDP UMEMs (%s, %d page(s))", free, size, mib(need), want)
	}
}

// memory: what the process holds from its start and what can grow under
// load, against the memory it can have (config.Memory). CheckHost has
// refused what does not fit at start; what fits only until the socket
// buffers and the held packets fill is a warning.
func (c *checker) memory() {
	m := c.cfg.Memory()
	switch {
	case m.Err != nil || m.Have <= 0:
		return
	case !m.Fits():
		c.add(Warn, "memory", "%s", m.Warning())
	default:
		c.add(OK, "memory", "%s", m)
	}
}

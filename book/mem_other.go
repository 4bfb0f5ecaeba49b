//go:build !linux

package book

func adviseHuge(b []byte) {}

// HugePages reports whether the tables New allocates can be backed by
// transparent huge pages: only on Linux.
func HugePages() (ok bool, mode string) { return false, "not Linux" }

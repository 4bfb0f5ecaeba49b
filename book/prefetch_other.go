//go:build !amd64

package book

// prefetch is a no-op where there is no prefetch_GOARCH.s.
func prefetch(addr uintptr) {}

func prefetch2(a, b uintptr) {}

func (bs *Books) prefetchBlocks(blocks []byte, max int) int { return bs.prefetchBlocksGo(blocks, max) }

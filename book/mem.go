package book

import "github.com/marketfeed/feedhandler/internal/mem"

// prepare backs s with huge pages where possible and touches every page so
// the page faults happen in New, not on the apply path.
func prepare[T any](s []T) {
	b := mem.Bytes(s)
	adviseHuge(b)
	mem.Touch(b)
}

//go:build !race

package single

import "sync/atomic"

// On arm64 a plain store may become visible before the writer's earlier
// ones, so the word is stored with atomic.Uint64's Store (STLR, a release)
// after its Load (LDAR), where Add would be a locked LDADDAL or a
// load-exclusive loop.

// Add adds d to *c. Only c's writer may call it.
func Add(c *atomic.Uint64, d uint64) { c.Store(c.Load() + d) }

// Store sets *c to v. Only c's writer may call it.
func Store(c *atomic.Uint64, v uint64) { c.Store(v) }

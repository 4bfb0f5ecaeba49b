//go:build race || !(amd64 || arm64)

package single

import "sync/atomic"

// Add adds d to *c. Only c's writer may call it.
func Add(c *atomic.Uint64, d uint64) { c.Add(d) }

// Store sets *c to v. Only c's writer may call it.
func Store(c *atomic.Uint64, v uint64) { c.Store(v) }

//go:build !linux

package spsc

import "time"

// osYield and osSleep are Linux's; elsewhere Backoff.Thread falls back to
// the Go scheduler.
func osYield() bool { return false }

func osSleep(time.Duration) bool { return false }

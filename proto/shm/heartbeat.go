package shm

import (
	"sync/atomic"
	"time"
)

// This file holds the writer's liveness: the heartbeat readers judge it by.

// Heartbeat tells readers the writer is alive. Call it at least every
// Config.HeartbeatInterval, also when no message arrives. It takes no lock:
// a heartbeat goroutine that loses its CPU inside it holds up no Register,
// Rebind or Unbind of a publishing thread. It may run while Close does:
// Close waits for a heartbeat that passed its closed check to store it
// before it unmaps, and after Close a heartbeat does nothing.
func (w *Writer) Heartbeat() {
	// Both sequentially consistent (sync/atomic): either this load sees
	// closed, or Close's load of beating, after its store of closed, sees
	// this heartbeat counted.
	w.beating.Add(1)
	defer w.beating.Add(-1)
	if w.closed.Load() {
		return
	}
	if heartbeatHook != nil {
		heartbeatHook()
	}
	w.storeHeartbeat(time.Now().UnixNano())
}

// heartbeatHook, set by tests only, runs inside Heartbeat between its
// closed check and its store: where a descheduled heartbeat goroutine
// stands.
var heartbeatHook func()

// storeHeartbeat stores a heartbeat in the header and in w.beat, on an open
// writer (Heartbeat, counted in beating, or Close, under w.mu before it
// sets closed).
func (w *Writer) storeHeartbeat(now int64) {
	atomic.StoreInt64(w.m.i64(offHeartbeat), now)
	w.beat.Store(now)
}

// LastHeartbeat returns the heartbeat stored in the header (the zero Time
// after Close). It takes no lock and never reads the mapping (the writer
// keeps a copy), so metrics may call it during and after Close.
func (w *Writer) LastHeartbeat() time.Time {
	if w.closed.Load() {
		return time.Time{}
	}
	return time.Unix(0, w.beat.Load())
}

// Package single updates counters that have one writer and any number of
// readers: a hot thread's statistics and latency histograms, which other
// goroutines (stats copies, metrics scrapes) read while it goes on.
//
// The counters are sync/atomic's Uint64, and readers Load them as ever.
// Only the writer changes them, so it needs no atomic read-modify-write.
// On amd64 Add and Store are a plain add to memory and a plain store of
// the aligned word (one ADDQ, one MOVQ), where atomic.Uint64's Add is a
// LOCK XADD and its Store an XCHG, each a full barrier: on this project's
// AMD EPYC VM two uncontended locked adds cost 4.6 to 5.8 ns, the two
// plain ones 1.3 to 2.0 (BenchmarkAdd, BenchmarkAtomicAdd, pinned, load
// about 7). On arm64 they are
// atomic.Uint64's Load and Store (LDAR, STLR) instead of its locked add.
//
// What a reader may rely on is what it had with atomic adds from one
// writer: a Load sees a whole value, the old or the new (an aligned 64-bit
// access is single-copy atomic on both), one counter's values in the
// order written, and, having seen a value, every store the writer made
// before the Add or Store that wrote it, with one condition: the writer
// published those stores through a function call or an atomic operation
// before it. amd64 keeps stores in order and arm64's STLR is a release,
// but the compiler is free to drop a plain store that a later plain store
// to the same place overwrites when nothing between them reads it: gc
// (go1.26) compiles `s.data = 1; Store(&s.n, 7); s.data = 2` to two stores,
// the first gone; it does not move a store across a call or an atomic.
// Every caller here updates its counter after the call that published
// (record, Release, recordPath, endBatch). A reader may not assume two
// counters were updated together, which atomic adds did not promise
// either.
//
// Under the race detector, and on other architectures, Add and Store are
// atomic.Uint64's own: the detector would report the writer's plain store
// against a reader's Load (TestReaderWhileWriting, run with -race, says
// so), and a 64-bit store may tear on a 32-bit machine.
//
// Two writers of one counter lose updates: only the goroutine that owns
// the counter may call Add or Store on it.
package single

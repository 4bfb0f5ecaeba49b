package shm

// Memory ordering of the writer (see "Memory ordering" in docs/SHM.md).
//
// Every slot has one writer, and with Config.SingleWriter so has the
// journal, so the writer never needs a read-modify-write: it needs its
// stores to become visible in an order readers can rely on, and nothing
// more. sync/atomic offers only sequentially consistent stores, which on
// amd64 are an XCHG (a full fence that drains the store buffer, tens of
// cycles each; a publish used seven). The three functions below give
// exactly the order needed, per architecture:
//
//   - storeRelease64/32: every load and store before it is visible before
//     this store (a release store). amd64 (TSO: stores are never reordered
//     with older loads or stores): a plain MOV. arm64: STLR.
//   - storeBegin64: this store is visible before every store after it (the
//     store of a seqlock's odd count, or of a journal record's busy stamp).
//     amd64: a plain MOV (TSO again). arm64: STR, then DMB ISHST (Linux's
//     write_seqcount_begin: the increment, then smp_wmb).
//   - putRecord: a journal record rewrite: busy stamp (storeBegin), data,
//     then the final stamp (release).
//
// They are assembly functions (order_amd64.s, order_arm64.s) on purpose:
// the Go compiler cannot see into an assembly call, so it never moves a
// memory access across one; a Go function with plain stores would carry no
// such promise. Other architectures use sync/atomic (order_other.go),
// whose sequentially consistent stores are stronger than needed.
//
// Readers need no change: they load with acquire (sync/atomic Load in Go,
// std::atomic_ref/memory_order_acquire in C++, the Python reader's
// re-check of the sequence) exactly as the protocol in docs/SHM.md says.

package shm

// Memory ordering of the writer (see "Memory ordering" in docs/SHM.md).
//
// Every slot has one writer, and with Config.SingleWriter so has the
// journal, so the writer never needs a read-modify-write: it needs its
// stores to become visible in an order readers can rely on, and nothing
// more. sync/atomic offers only sequentially consistent stores, which on
// amd64 are an XCHG (a full fence that drains the store buffer, tens of
// cycles each; a publish used seven). The functions below give
// exactly the order needed, per architecture:
//
//   - storeBegin64: this store is visible before every store after it (the
//     store of a seqlock's odd count). amd64: a plain MOV (TSO: stores are
//     never reordered with older loads or stores). arm64: STR, then DMB
//     ISHST (Linux's write_seqcount_begin: the increment, then smp_wmb).
//   - seqEnd: the slot's len, then the even count with release order: every
//     load and store before it is visible before it. amd64: plain MOVs.
//     arm64: STR, then STLR.
//   - putRecord: a journal record rewrite: the busy stamp (as storeBegin64),
//     the data, then the final stamp (release).
//   - commitSingle: seqEnd, then putRecord and the head (release): a single
//     writer's whole end of a publish (Writer.end, for Publish and Commit).
//
// Each publish makes three such calls (two with Config.SingleWriter), not
// one per store: an assembly function costs a call through the ABI
// wrapper.
//
// They are assembly functions (order_amd64.s, order_arm64.s) on purpose:
// the Go compiler cannot see into an assembly call, so it never moves a
// memory access across one; a Go function with plain stores would carry no
// such promise. Other architectures use sync/atomic (order_other.go),
// whose sequentially consistent stores are stronger than needed.
//
// Readers need no change: they load with acquire (sync/atomic Load in Go,
// __atomic_load_n with __ATOMIC_ACQUIRE in C++, the Python reader's
// re-check of the sequence) exactly as the protocol in docs/SHM.md says.

//go:build amd64 || arm64

package shm

// storeBegin64 stores v at *p, ordered before every later store. See
// order.go.
//
//go:noescape
func storeBegin64(p *uint64, v uint64)

// seqEnd ends a slot write: it stores n at the slot's len (seq + 8), then
// v at *seq with release order. See order.go.
//
//go:noescape
func seqEnd(seq *uint64, n uint32, v uint64)

// putRecord rewrites the journal record at rec (stamp, then data): stamp
// all ones (ordered before the data), data, then stamp (release). See
// order.go.
//
//go:noescape
func putRecord(rec *uint64, data, stamp uint64)

// commitSingle is seqEnd(seq, n, v), then putRecord(rec, data, stamp) and
// a release store of stamp at *head: a single writer's whole end of a
// publish (slot, journal record and head) in one call. See order.go.
//
//go:noescape
func commitSingle(seq *uint64, n uint32, v uint64, rec *uint64, data, stamp uint64, head *uint64)

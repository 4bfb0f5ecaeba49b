//go:build amd64 || arm64

package shm

// storeRelease64 stores v at *p with release order. See order.go.
//
//go:noescape
func storeRelease64(p *uint64, v uint64)

// storeRelease32 stores v at *p with release order. See order.go.
//
//go:noescape
func storeRelease32(p *uint32, v uint32)

// storeBegin64 stores v at *p, ordered before every later store. See
// order.go.
//
//go:noescape
func storeBegin64(p *uint64, v uint64)

// putRecord rewrites the journal record at rec (stamp, then data): stamp
// all ones (ordered before the data), data, then stamp (release). See
// order.go.
//
//go:noescape
func putRecord(rec *uint64, data, stamp uint64)

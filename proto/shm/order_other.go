//go:build !amd64 && !arm64

package shm

import (
	"sync/atomic"
	"unsafe"
)

// On architectures without an assembly version the ordered stores are
// sync/atomic's sequentially consistent ones: stronger than needed, and
// correct. See order.go.

func storeBegin64(p *uint64, v uint64) { atomic.StoreUint64(p, v) }

func seqEnd(seq *uint64, n uint32, v uint64) {
	atomic.StoreUint32((*uint32)(unsafe.Add(unsafe.Pointer(seq), 8)), n)
	atomic.StoreUint64(seq, v)
}

func putRecord(rec *uint64, data, stamp uint64) {
	atomic.StoreUint64(rec, stampBusy)
	atomic.StoreUint64((*uint64)(unsafe.Add(unsafe.Pointer(rec), 8)), data)
	atomic.StoreUint64(rec, stamp)
}

func commitSingle(seq *uint64, n uint32, v uint64, rec *uint64, data, stamp uint64, head *uint64) {
	seqEnd(seq, n, v)
	putRecord(rec, data, stamp)
	atomic.StoreUint64(head, stamp)
}

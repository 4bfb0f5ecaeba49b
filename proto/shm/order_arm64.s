#include "textflag.h"

// arm64 may reorder stores with each other: a release store is STLR, and a
// store that must be seen before the stores after it is followed by a
// store-store barrier (DMB ISHST). See order.go.

// func storeBegin64(p *uint64, v uint64)
TEXT ·storeBegin64(SB), NOSPLIT, $0-16
	MOVD p+0(FP), R0
	MOVD v+8(FP), R1
	MOVD R1, (R0)
	DMB $0xa // ISHST
	RET

// func seqEnd(seq *uint64, n uint32, v uint64)
TEXT ·seqEnd(SB), NOSPLIT, $0-24
	MOVD seq+0(FP), R0
	MOVWU n+8(FP), R1
	MOVD v+16(FP), R2
	MOVW R1, 8(R0)
	STLR R2, (R0)
	RET

// func putRecord(rec *uint64, data, stamp uint64)
TEXT ·putRecord(SB), NOSPLIT, $0-24
	MOVD rec+0(FP), R0
	MOVD data+8(FP), R1
	MOVD stamp+16(FP), R2
	MOVD $-1, R3
	MOVD R3, (R0)
	DMB $0xa // ISHST
	MOVD R1, 8(R0)
	STLR R2, (R0)
	RET

// func commitSingle(seq *uint64, n uint32, v uint64, rec *uint64, data, stamp uint64, head *uint64)
TEXT ·commitSingle(SB), NOSPLIT, $0-56
	MOVD seq+0(FP), R0
	MOVWU n+8(FP), R1
	MOVD v+16(FP), R2
	MOVW R1, 8(R0)
	STLR R2, (R0)
	MOVD rec+24(FP), R0
	MOVD data+32(FP), R1
	MOVD stamp+40(FP), R2
	MOVD head+48(FP), R4
	MOVD $-1, R3
	MOVD R3, (R0)
	DMB $0xa // ISHST
	MOVD R1, 8(R0)
	STLR R2, (R0)
	STLR R2, (R4)
	RET

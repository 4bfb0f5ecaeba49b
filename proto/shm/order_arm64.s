#include "textflag.h"

// arm64 may reorder stores with each other: a release store is STLR, and a
// store that must be seen before the stores after it is followed by a
// store-store barrier (DMB ISHST). See order.go.

// func storeRelease64(p *uint64, v uint64)
TEXT ·storeRelease64(SB), NOSPLIT, $0-16
	MOVD p+0(FP), R0
	MOVD v+8(FP), R1
	STLR R1, (R0)
	RET

// func storeRelease32(p *uint32, v uint32)
TEXT ·storeRelease32(SB), NOSPLIT, $0-12
	MOVD p+0(FP), R0
	MOVWU v+8(FP), R1
	STLRW R1, (R0)
	RET

// func storeBegin64(p *uint64, v uint64)
TEXT ·storeBegin64(SB), NOSPLIT, $0-16
	MOVD p+0(FP), R0
	MOVD v+8(FP), R1
	MOVD R1, (R0)
	DMB $0xa // ISHST
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

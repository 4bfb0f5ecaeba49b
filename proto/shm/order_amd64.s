#include "textflag.h"

// amd64 is TSO: a store is never reordered with an older load or store, so
// a plain MOV is a release store, and a store is never reordered with a
// younger store. What these functions add over a Go assignment is that the
// compiler cannot move memory accesses across a call to them. See order.go.

// func storeBegin64(p *uint64, v uint64)
TEXT ·storeBegin64(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ v+8(FP), BX
	MOVQ BX, (AX)
	RET

// func seqEnd(seq *uint64, n uint32, v uint64)
TEXT ·seqEnd(SB), NOSPLIT, $0-24
	MOVQ seq+0(FP), AX
	MOVL n+8(FP), BX
	MOVQ v+16(FP), CX
	MOVL BX, 8(AX)
	MOVQ CX, (AX)
	RET

// func putRecord(rec *uint64, data, stamp uint64)
TEXT ·putRecord(SB), NOSPLIT, $0-24
	MOVQ rec+0(FP), AX
	MOVQ data+8(FP), BX
	MOVQ stamp+16(FP), CX
	MOVQ $-1, DX
	MOVQ DX, (AX)
	MOVQ BX, 8(AX)
	MOVQ CX, (AX)
	RET

// func commitSingle(seq *uint64, n uint32, v uint64, rec *uint64, data, stamp uint64, head *uint64)
TEXT ·commitSingle(SB), NOSPLIT, $0-56
	MOVQ seq+0(FP), AX
	MOVL n+8(FP), BX
	MOVQ v+16(FP), CX
	MOVL BX, 8(AX)
	MOVQ CX, (AX)
	MOVQ rec+24(FP), AX
	MOVQ data+32(FP), BX
	MOVQ stamp+40(FP), CX
	MOVQ head+48(FP), SI
	MOVQ $-1, DX
	MOVQ DX, (AX)
	MOVQ BX, 8(AX)
	MOVQ CX, (AX)
	MOVQ CX, (SI)
	RET

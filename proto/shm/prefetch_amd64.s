#include "textflag.h"

// func prefetchLines(p unsafe.Pointer, n int)
//
// PREFETCHT0 every cache line of p[:n] (n > 0; a prefetch never faults).
TEXT ·prefetchLines(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ p+0(FP), AX
	MOVQ n+8(FP), CX
	ADDQ AX, CX
loop:
	PREFETCHT0 (AX)
	ADDQ $64, AX
	CMPQ AX, CX
	JCS loop // unsigned below
	RET

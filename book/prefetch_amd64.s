#include "textflag.h"

// func prefetch(addr uintptr)
TEXT ·prefetch(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ addr+0(FP), AX
	PREFETCHT0 (AX)
	RET

// func prefetch2(a, b uintptr)
TEXT ·prefetch2(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ a+0(FP), AX
	MOVQ b+8(FP), BX
	PREFETCHT0 (AX)
	PREFETCHT0 (BX)
	RET

// func prefetchBlocksAsm(orders unsafe.Pointer, mask uint64, books unsafe.Pointer, p unsafe.Pointer, n int, max int) int
//
// Books.prefetchBlocksGo, in one call: for each of at most max length-prefixed
// blocks of p[:n] that fit, when the message is at least 19 bytes,
// PREFETCHT0 &orders[bigEndian64(msg[11:19])&mask] and
// &books[bigEndian16(msg[1:3])] (a prefetch never faults: the locate is not
// checked). Returns the bytes walked.
TEXT ·prefetchBlocksAsm(SB), NOSPLIT|NOFRAME, $0-56
	MOVQ orders+0(FP), R8
	MOVQ mask+8(FP), R9
	MOVQ books+16(FP), R12
	MOVQ p+24(FP), SI
	MOVQ n+32(FP), CX
	MOVQ max+40(FP), DX
	XORQ AX, AX // offset of the next block
	TESTQ DX, DX
	JLE done
loop:
	LEAQ 2(AX), BX // offset of its message
	CMPQ BX, CX
	JGT done
	MOVWQZX 0(SI)(AX*1), DI
	ROLW $8, DI // message length, big endian
	LEAQ 0(BX)(DI*1), R10 // offset after the message
	CMPQ R10, CX
	JGT done
	MOVQ R10, AX
	CMPQ DI, $19
	JLT next
	MOVQ 11(SI)(BX*1), R11
	BSWAPQ R11
	ANDQ R9, R11
	SHLQ $5, R11 // * sizeof(order)
	PREFETCHT0 0(R8)(R11*1)
	MOVWQZX 1(SI)(BX*1), R13
	ROLW $8, R13 // locate, big endian
	SHLQ $7, R13 // * sizeof(Book)
	PREFETCHT0 0(R12)(R13*1)
next:
	DECQ DX
	JNZ loop
done:
	MOVQ AX, ret+48(FP)
	RET

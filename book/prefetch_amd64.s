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
// blocks of p[:n] that fit and start at least 21 bytes before n (a block
// header and the 19 bytes of a message to the end of its reference),
// PREFETCHT0 &orders[bigEndian64(msg[11:19])&mask] and
// &books[bigEndian16(msg[1:3])] (a prefetch never faults: the locate is not
// checked; a message shorter than 19 bytes, which holds no reference, has
// bytes of the next block read as one, in p all the same). Returns the bytes
// walked. The loop is unrolled twice, the two halves taking the block's
// offset in AX and R10 in turn, so that no move carries it over.
TEXT ·prefetchBlocksAsm(SB), NOSPLIT|NOFRAME, $0-56
	MOVQ orders+0(FP), R8
	MOVQ mask+8(FP), R9
	MOVQ books+16(FP), R12
	MOVQ p+24(FP), SI
	MOVQ n+32(FP), CX
	MOVQ max+40(FP), DX
	LEAQ -21(CX), R13 // the last offset a block is walked from
	XORQ AX, AX // offset of the next block
	TESTQ DX, DX
	JLE done
loop:
	// The block at AX; the one after it at R10.
	CMPQ AX, R13
	JGT done
	MOVWQZX 0(SI)(AX*1), DI
	ROLW $8, DI // message length, big endian
	LEAQ 2(AX)(DI*1), R10 // offset after the message
	CMPQ R10, CX
	JGT done
	MOVQ 13(SI)(AX*1), R11
	BSWAPQ R11
	ANDQ R9, R11
	SHLQ $5, R11 // * sizeof(order)
	PREFETCHT0 0(R8)(R11*1)
	MOVWQZX 3(SI)(AX*1), DI
	ROLW $8, DI // locate, big endian
	SHLQ $7, DI // * sizeof(Book)
	PREFETCHT0 0(R12)(DI*1)
	DECQ DX
	JZ done10
	// The block at R10; the one after it at AX.
	CMPQ R10, R13
	JGT done10
	MOVWQZX 0(SI)(R10*1), DI
	ROLW $8, DI
	LEAQ 2(R10)(DI*1), AX
	CMPQ AX, CX
	JGT done10
	MOVQ 13(SI)(R10*1), R11
	BSWAPQ R11
	ANDQ R9, R11
	SHLQ $5, R11
	PREFETCHT0 0(R8)(R11*1)
	MOVWQZX 3(SI)(R10*1), DI
	ROLW $8, DI
	SHLQ $7, DI
	PREFETCHT0 0(R12)(DI*1)
	DECQ DX
	JNZ loop
done:
	MOVQ AX, ret+48(FP)
	RET
done10:
	MOVQ R10, ret+48(FP)
	RET

package rx

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Practice 1 of the style guide: one chokepoint per kernel interface. In
// feed/rx only sys.go may import unsafe or call unix.Syscall*.
func TestSyscallChokepoint(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || name == "sys.go" {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			if imp.Path.Value == `"unsafe"` {
				t.Errorf("%s imports unsafe: move that code into sys.go", name)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "unix" && (strings.HasPrefix(sel.Sel.Name, "Syscall") || strings.HasPrefix(sel.Sel.Name, "RawSyscall")) {
					t.Errorf("%s: unix.%s: raw syscalls of feed/rx belong in sys.go", fset.Position(sel.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}

// BenchmarkRecvmmsgEmpty is the cost of one recvmmsg(MSG_DONTWAIT) on an
// empty socket (EAGAIN), the call the socket backend makes per line and
// Receive: raw is recvmmsg (a raw syscall with MSG_DONTWAIT, the thread
// keeps its P), syscall the same call through the runtime's
// entersyscall/exitsyscall. The socket is not bound: no traffic.
func BenchmarkRecvmmsgEmpty(b *testing.B) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	msgs := make([]unix.Mmsghdr, 8)
	bufs := make([]byte, 8*64)
	iovs := make([]unix.Iovec, 8)
	for i := range msgs {
		iovs[i].Base = &bufs[i*64]
		iovs[i].SetLen(64)
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := recvmmsg(fd, msgs, unix.MSG_DONTWAIT); err != unix.EAGAIN {
				b.Fatalf("recvmmsg on an empty socket: %v, want EAGAIN", err)
			}
		}
	})
	b.Run("syscall", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
				uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0); e != unix.EAGAIN {
				b.Fatalf("recvmmsg on an empty socket: %v, want EAGAIN", e)
			}
		}
	})
}

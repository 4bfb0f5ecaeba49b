package rx

import (
	"errors"
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

// mmsgBufs makes n recvmmsg headers, header i reading into bufs[64*i:][:64].
func mmsgBufs(n int) (msgs []unix.Mmsghdr, bufs []byte) {
	msgs = make([]unix.Mmsghdr, n)
	bufs = make([]byte, n*64)
	iovs := make([]unix.Iovec, n)
	for i := range msgs {
		iovs[i].Base = &bufs[i*64]
		iovs[i].SetLen(64)
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	return msgs, bufs
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
	msgs, _ := mmsgBufs(8)
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

// TestRecvmmsgBothCalls: recvmmsg's two calls (raw with MSG_DONTWAIT, the
// runtime's without) read the queued datagrams and return the kernel's
// errno, on a Unix datagram socket pair (no network).
func TestRecvmmsgBothCalls(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	msgs, bufs := mmsgBufs(2)
	for _, c := range []struct {
		name  string
		flags int
	}{{"raw", unix.MSG_DONTWAIT}, {"syscall", 0}} {
		// Without MSG_DONTWAIT the call waits for len(msgs) datagrams:
		// both are queued first.
		for _, d := range []string{"a", "bc"} {
			if _, err := unix.Write(fds[1], []byte(d)); err != nil {
				t.Fatal(err)
			}
		}
		n, err := recvmmsg(fds[0], msgs, c.flags)
		if err != nil || n != 2 || msgs[0].Len != 1 || msgs[1].Len != 2 || string(bufs[:1]) != "a" || string(bufs[64:66]) != "bc" {
			t.Errorf("%s: recvmmsg: %d, %v, lengths %d %d, want 2 datagrams a, bc", c.name, n, err, msgs[0].Len, msgs[1].Len)
		}
		if _, err := recvmmsg(-1, msgs, c.flags); !errors.Is(err, unix.EBADF) {
			t.Errorf("%s: recvmmsg of fd -1: %v, want EBADF", c.name, err)
		}
	}
	if _, err := recvmmsg(fds[0], msgs, unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("recvmmsg(MSG_DONTWAIT) of an empty socket: %v, want EAGAIN", err)
	}
}

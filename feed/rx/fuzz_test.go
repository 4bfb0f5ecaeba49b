package rx

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// cmsg builds one control message.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.SizeofCmsghdr, unix.SizeofCmsghdr+len(data)+8)
	binary.NativeEndian.PutUint64(b, uint64(unix.SizeofCmsghdr+len(data)))
	binary.NativeEndian.PutUint32(b[8:], uint32(level))
	binary.NativeEndian.PutUint32(b[12:], uint32(typ))
	b = append(b, data...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestParseControl(t *testing.T) {
	ts := make([]byte, 16)
	binary.NativeEndian.PutUint64(ts, 1700000000)
	binary.NativeEndian.PutUint64(ts[8:], 123)
	other := cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, binary.NativeEndian.AppendUint32(nil, 42))
	b := append(other, cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts)...)
	if rxTime := parseControl(b); rxTime != 1700000000*1e9+123 {
		t.Fatalf("parseControl = %d", rxTime)
	}
	if rxTime := parseControl(b[:len(b)-4]); rxTime != 0 {
		t.Fatalf("truncated control parsed: %d", rxTime)
	}
}

func TestAddrFromName(t *testing.T) {
	name := make([]byte, nameLen)
	binary.NativeEndian.PutUint16(name, unix.AF_INET)
	binary.BigEndian.PutUint16(name[2:], 26400)
	copy(name[4:], []byte{10, 99, 0, 1})
	if got := addrFromName(name); got.String() != "10.99.0.1:26400" {
		t.Fatalf("addrFromName = %v", got)
	}
	if got := addrFromName(name[:8]); got.IsValid() {
		t.Fatalf("short name decoded as %v", got)
	}
}

// FuzzParseControl: any control buffer parses without panicking.
func FuzzParseControl(f *testing.F) {
	f.Add(cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, make([]byte, 16)))
	f.Add(cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, make([]byte, 4)))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseControl(b)
		addrFromName(b)
	})
}

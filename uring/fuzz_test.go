package uring

import "testing"

// FuzzParseRecvmsg: any buffer either parses into slices within it or is
// rejected as short; it never panics.
func FuzzParseRecvmsg(f *testing.F) {
	f.Add([]byte("\x10\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00"+
		"\x02\x00\x67\x20\x0a\x63\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00hello"), 16, 0)
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00"), 0, 0)
	f.Fuzz(func(t *testing.T, b []byte, nameLen, controlLen int) {
		if nameLen < 0 || controlLen < 0 || nameLen > 1<<16 || controlLen > 1<<16 {
			return
		}
		out, name, control, payload, err := ParseRecvmsg(b, nameLen, controlLen)
		if err != nil {
			return
		}
		if len(name) > nameLen || len(control) > controlLen || len(payload) > int(out.PayloadLen) ||
			RecvmsgOutLen+nameLen+controlLen+len(payload) > len(b) {
			t.Fatalf("slices overrun: name %d control %d payload %d of %d", len(name), len(control), len(payload), len(b))
		}
	})
}

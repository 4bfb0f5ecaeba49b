package soupbintcp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/soupbintcp"
)

// rawLoginServer answers one login with answer(login request packet, as
// read), from bytes it writes itself (not this package's server), and
// returns its address.
func rawLoginServer(t *testing.T, answer func(login []byte) []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
		login := make([]byte, 2+1+soupbintcp.LoginRequestLen)
		if _, err := io.ReadFull(c, login); err != nil {
			return
		}
		c.Write(answer(login)) //nolint:errcheck
		io.Copy(io.Discard, c) //nolint:errcheck
	}()
	return ln.Addr().String()
}

func rawPacket(typ byte, payload string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(payload)+1))
	return append(append(b, typ), payload...)
}

// TestSessionRightJustified: SoupBinTCP's Login Accepted shows the session
// "Left padded with spaces" (right-justified), and the Requested Session of
// the Login Request names that session: it goes on the wire as the server
// shows it, so a server that compares the field byte for byte with its own
// finds it. The session's neighbours keep their justification (username
// and password left, the sequence number right).
func TestSessionRightJustified(t *testing.T) {
	l := soupbintcp.AppendLoginRequest(nil, soupbintcp.LoginRequest{Username: "lab", Password: "secret", Session: "GEN1", Sequence: 1})
	if want := "\x00\x2fLlab   secret          GEN1" + "                   1"; string(l) != want {
		t.Errorf("login request %q, want %q", l, want)
	}
	if l2 := soupbintcp.AppendLoginRequest(nil, soupbintcp.LoginRequest{Username: "lab", Password: "secret", Session: " GEN1 ", Sequence: 1}); !bytes.Equal(l2, l) {
		t.Errorf("login request for session %q: %q, want %q (spaces around a name are padding)", " GEN1 ", l2, l)
	}
	blank := soupbintcp.AppendLoginRequest(nil, soupbintcp.LoginRequest{Username: "lab", Password: "secret", Sequence: 1})
	if got := string(blank[3+6+10 : 3+6+10+10]); got != "          " {
		t.Errorf("blank requested session %q, want all spaces", got)
	}
	// A server reads the Requested Session whatever its justification:
	// SoupBinTCP 3.00 states none for it.
	for _, field := range []string{"      GEN1", "GEN1      ", "   GEN1   "} {
		if req, err := soupbintcp.ParseLoginRequest([]byte("lab   secret    " + field + "                   1")); err != nil || req.Session != "GEN1" {
			t.Errorf("login request with session field %q: %q, %v; want GEN1", field, req.Session, err)
		}
	}
	a := soupbintcp.AppendLoginAccepted(nil, "GEN1", 42)
	if want := "\x00\x1fA      GEN1" + "                  42"; string(a) != want {
		t.Errorf("login accepted %q, want %q", a, want)
	}
	if s, seq, err := soupbintcp.ParseLoginAccepted(a[3:]); s != "GEN1" || seq != 42 || err != nil {
		t.Errorf("ParseLoginAccepted(%q) = %q, %d, %v", a[3:], s, seq, err)
	}

	// A server with session GEN1 that shows it as the specification does
	// and refuses ('S') a Requested Session other than those 10 bytes.
	const shown = "      GEN1"
	addr := rawLoginServer(t, func(login []byte) []byte {
		if req := login[3+6+10 : 3+6+10+10]; !bytes.Equal(req, []byte(shown)) {
			return rawPacket(soupbintcp.TypeLoginRejected, "S")
		}
		return rawPacket(soupbintcp.TypeLoginAccepted, shown+"                   1")
	})
	c, err := soupbintcp.Dial(context.Background(), soupbintcp.ClientConfig{Addr: addr, Username: "lab", Password: "secret", Session: "GEN1", Sequence: 1})
	if err != nil {
		t.Fatalf("login to session GEN1 of a server showing it as %q: %v, want accepted", shown, err)
	}
	defer c.Close()
	if c.Session() != "GEN1" || c.NextSeq() != 1 {
		t.Errorf("logged in to %q at %d, want GEN1 at 1", c.Session(), c.NextSeq())
	}
}

// TestPaddingNUL: a server that fills the fixed fields of its Login
// Accepted with NULs instead of spaces (Nasdaq's own SoupBinTCP library
// strips both from the numeric fields it reads) is logged in to, as is one
// padding with spaces on the other side; a NUL between digits is still a
// bad field.
func TestPaddingNUL(t *testing.T) {
	for _, c := range []struct{ session, seq string }{
		{"GEN1\x00\x00\x00\x00\x00\x00", "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x001"},
		{"GEN1\x00\x00\x00\x00\x00\x00", "1\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"},
		{"      GEN1", "1                   "},
	} {
		addr := rawLoginServer(t, func([]byte) []byte { return rawPacket(soupbintcp.TypeLoginAccepted, c.session+c.seq) })
		cl, err := soupbintcp.Dial(context.Background(), soupbintcp.ClientConfig{Addr: addr, Username: "lab", Password: "secret", Sequence: 1})
		if err != nil {
			t.Errorf("Login Accepted %q: %v, want logged in to GEN1 at 1", c.session+c.seq, err)
			continue
		}
		if cl.Session() != "GEN1" || cl.NextSeq() != 1 {
			t.Errorf("Login Accepted %q: logged in to %q at %d, want GEN1 at 1", c.session+c.seq, cl.Session(), cl.NextSeq())
		}
		cl.Close()
	}
	if v, err := soupbintcp.ParseNumeric([]byte("\x00\x00 4\x002 ")); err == nil {
		t.Errorf("ParseNumeric of a NUL between digits = %d, want ErrBadField", v)
	}
}

// TestServerCornerCases: the other side's corner cases, from a server that
// writes its own bytes. Login Rejected with each code (and one the
// specification does not define) is ErrLoginRejected with that reason; End
// of Session before Login Accepted is ErrEndOfSession; a Sequenced Data
// packet of length 1 (no message) is handed on empty and counts a sequence
// number; a server silent past PeerTimeout is ErrPeerTimeout.
func TestServerCornerCases(t *testing.T) {
	dial := func(addr string) (*soupbintcp.Client, error) {
		return soupbintcp.Dial(context.Background(), soupbintcp.ClientConfig{Addr: addr, Username: "lab", Password: "secret", Sequence: 1, PeerTimeout: 300 * time.Millisecond})
	}
	for _, code := range []byte{soupbintcp.RejectNotAuthorized, soupbintcp.RejectSessionUnavailable, 'X'} {
		addr := rawLoginServer(t, func([]byte) []byte { return rawPacket(soupbintcp.TypeLoginRejected, string(code)) })
		c, err := dial(addr)
		var rej *soupbintcp.RejectError
		if !errors.Is(err, soupbintcp.ErrLoginRejected) || !errors.As(err, &rej) || rej.Reason != code {
			t.Errorf("Login Rejected %q: client %v, %v; want ErrLoginRejected with reason %q", code, c, err, code)
		}
	}
	addr := rawLoginServer(t, func([]byte) []byte { return rawPacket(soupbintcp.TypeEndOfSession, "") })
	if _, err := dial(addr); !errors.Is(err, soupbintcp.ErrEndOfSession) {
		t.Errorf("End of Session before Login Accepted: %v, want ErrEndOfSession", err)
	}

	addr = rawLoginServer(t, func([]byte) []byte {
		b := rawPacket(soupbintcp.TypeLoginAccepted, "      GEN1"+"                   7")
		b = append(b, 0, 1, soupbintcp.TypeSequencedData) // length 1: the type alone
		return append(b, rawPacket(soupbintcp.TypeSequencedData, "x")...)
	})
	c, err := dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, want := range []string{"", "x"} {
		typ, p, err := c.Next()
		if typ != soupbintcp.TypeSequencedData || string(p) != want || err != nil || c.NextSeq() != uint64(8+i) {
			t.Errorf("packet %d: %q %q %v, next %d; want 'S' %q, next %d", i, typ, p, err, c.NextSeq(), want, 8+i)
		}
	}
	// Then nothing: no heartbeat either.
	if typ, _, err := c.Next(); !errors.Is(err, soupbintcp.ErrPeerTimeout) {
		t.Errorf("a silent server: %q %v, want ErrPeerTimeout", typ, err)
	}
}

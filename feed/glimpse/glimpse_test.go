package glimpse

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/soupbintcp"
)

// scripted accepts one connection, logs it in and writes stream; then it
// closes unless hold, in which case it waits for the client to go.
func scripted(t *testing.T, stream []byte, hold bool) string {
	t.Helper()
	return scriptedAt(t, 1, stream, hold)
}

// scriptedAt is scripted with Login Accepted naming sequence number seq.
func scriptedAt(t *testing.T, seq uint64, stream []byte, hold bool) string {
	t.Helper()
	return scriptedServe(t, seq, func(sc *soupbintcp.ServerConn) {
		sc.WriteRaw(stream, 0) //nolint:errcheck
		sc.Flush()             //nolint:errcheck
		if hold {
			<-sc.Gone()
		}
	})
}

// scriptedServe starts a SoupBinTCP server that logs one client in to
// session SCRIPT at sequence number seq, then calls serve.
func scriptedServe(t *testing.T, seq uint64, serve func(sc *soupbintcp.ServerConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		sc := soupbintcp.NewServerConn(c, soupbintcp.ServerConfig{HeartbeatInterval: time.Hour})
		defer sc.Close()
		if _, err := sc.ReadLogin(); err != nil {
			return
		}
		if sc.Accept("SCRIPT", seq) != nil {
			return
		}
		serve(sc)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func TestFetchScripted(t *testing.T) {
	add := itch.AddOrderFields{Header: itch.Header{Locate: 1}, OrderRef: 1, Side: 'B', Shares: 1, Price: 1}
	seq := func(m []byte) []byte { return soupbintcp.AppendPacket(nil, soupbintcp.TypeSequencedData, m) }
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	a := seq(add.Append(nil))
	end := seq(AppendSnapshot(nil, 1234))
	for _, c := range []struct {
		name    string
		stream  []byte
		want    error
		next    uint64
		msgs    uint64
		counter func(*Stats) uint64
	}{
		{"ok", cat(a, a, soupbintcp.AppendPacket(nil, 'H', nil), end), nil, 1234, 2, func(s *Stats) uint64 { return s.Completed.Load() }},
		{"unknown-itch-type-skipped", cat(a, seq([]byte("z0123456789")), end), nil, 1234, 1, func(s *Stats) uint64 { return s.UnknownMessages.Load() }},
		{"unsequenced-ignored", cat(soupbintcp.AppendPacket(nil, 'U', []byte("x")), a, end), nil, 1234, 1, func(s *Stats) uint64 { return s.UnsequencedPacket.Load() }},
		{"debug-ignored", cat(soupbintcp.AppendPacket(nil, '+', []byte("hi")), a, end), nil, 1234, 1, func(s *Stats) uint64 { return s.Soup.Debug.Load() }},
		{"truncated-packet", cat(a, a[:10]), ErrProtocol, 0, 1, func(s *Stats) uint64 { return s.Soup.Truncated.Load() }},
		{"closed-between-packets", cat(a, a), ErrProtocol, 0, 2, func(s *Stats) uint64 { return s.Closed.Load() }},
		{"short-itch", cat(a, seq(add.Append(nil)[:20])), ErrProtocol, 0, 1, func(s *Stats) uint64 { return s.ShortMessages.Load() }},
		{"long-itch-delivered", cat(a, seq(append(add.Append(nil), 0)), end), nil, 1234, 2, func(s *Stats) uint64 { return s.LongMessages.Load() }},
		{"empty-sequenced", cat(a, seq(nil)), ErrProtocol, 0, 1, func(s *Stats) uint64 { return s.EmptyMessages.Load() }},
		{"snapshot-not-numeric", cat(a, seq([]byte("G12345678901234567x90"))), ErrProtocol, 0, 1, func(s *Stats) uint64 { return s.BadSnapshot.Load() }},
		{"snapshot-zero", cat(seq(AppendSnapshot(nil, 0))), ErrProtocol, 0, 0, func(s *Stats) uint64 { return s.BadSnapshot.Load() }},
		{"snapshot-short", cat(seq([]byte("G123"))), ErrProtocol, 0, 0, func(s *Stats) uint64 { return s.BadSnapshot.Load() }},
		{"zero-length", cat(a, []byte{0, 0}), ErrProtocol, 0, 1, func(s *Stats) uint64 { return s.Soup.Empty.Load() }},
		{"unknown-soup-type", cat(a, []byte{0, 1, 'Q'}), ErrProtocol, 0, 1, func(s *Stats) uint64 { return s.Soup.UnknownType.Load() }},
		{"login-accepted-again", cat(a, soupbintcp.AppendLoginAccepted(nil, "X", 1)), ErrProtocol, 0, 1, func(s *Stats) uint64 { return s.Soup.UnknownType.Load() }},
		{"heartbeat-with-payload", cat(a, []byte{0, 2, 'H', 0}), ErrProtocol, 0, 1, func(s *Stats) uint64 { return s.Soup.BadLength.Load() }},
		{"end-of-session", cat(a, soupbintcp.AppendPacket(nil, 'Z', nil)), ErrEndOfSession, 0, 1, func(s *Stats) uint64 { return s.EndOfSession.Load() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := scripted(t, c.stream, c.want == nil)
			st := new(Stats)
			res, err := Fetch(context.Background(), Config{Addr: addr, IdleTimeout: 5 * time.Second, Stats: st}, func([]byte) error { return nil })
			if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			if res.NextSeq != c.next || res.Messages != c.msgs || res.Session != "SCRIPT" || c.counter(st) != 1 {
				t.Fatalf("result %+v, counter %d, stats %+v", res, c.counter(st), st.Soup.Snapshot())
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}

func TestFetchCallbackError(t *testing.T) {
	add := itch.AddOrderFields{Header: itch.Header{Locate: 1}, OrderRef: 1, Side: 'B', Shares: 1, Price: 1}
	addr := scripted(t, soupbintcp.AppendPacket(nil, soupbintcp.TypeSequencedData, add.Append(nil)), false)
	mine := errors.New("mine")
	_, err := Fetch(context.Background(), Config{Addr: addr}, func([]byte) error { return mine })
	if err != mine {
		t.Fatalf("err %v", err)
	}
}

// TestFetchLoginAcceptedPastStart: the server accepts the login for
// sequence 1 with Login Accepted naming a later sequence number (it
// resumes a session, or no longer has its start): the Sequenced Data that
// follows is not the spin's start (its System Event, Stock Directory
// messages and first orders are never sent). A snapshot without them is
// not a snapshot: loaded, its books would be published whole with
// instruments and orders missing. It is ErrProtocol, nothing delivered.
func TestFetchLoginAcceptedPastStart(t *testing.T) {
	add := itch.AddOrderFields{Header: itch.Header{Locate: 1}, OrderRef: 3, Side: 'B', Shares: 1, Price: 1}
	stream := soupbintcp.AppendPacket(nil, soupbintcp.TypeSequencedData, add.Append(nil))
	stream = soupbintcp.AppendPacket(stream, soupbintcp.TypeSequencedData, AppendSnapshot(nil, 1234))
	addr := scriptedAt(t, 3, stream, true)
	st := new(Stats)
	n := 0
	res, err := Fetch(context.Background(), Config{Addr: addr, IdleTimeout: 5 * time.Second, Stats: st}, func([]byte) error { n++; return nil })
	if !errors.Is(err, ErrProtocol) || n != 0 || st.Completed.Load() != 0 {
		t.Fatalf("login accepted at sequence 3: err %v, %d messages delivered, result %+v; want ErrProtocol and none", err, n, res)
	}
	t.Log(err)
}

// TestFetchLoginAcceptedOtherSession: the login asks for session OTHER
// and the server logs the client in to SCRIPT (its current session,
// whatever was asked): a snapshot of another session than the one
// configured (another day's) is not loaded. A blank requested session
// takes whatever the server names.
func TestFetchLoginAcceptedOtherSession(t *testing.T) {
	add := itch.AddOrderFields{Header: itch.Header{Locate: 1}, OrderRef: 1, Side: 'B', Shares: 1, Price: 1}
	stream := soupbintcp.AppendPacket(nil, soupbintcp.TypeSequencedData, add.Append(nil))
	stream = soupbintcp.AppendPacket(stream, soupbintcp.TypeSequencedData, AppendSnapshot(nil, 1234))
	for _, c := range []struct {
		session string
		ok      bool
	}{{"OTHER", false}, {"", true}, {"SCRIPT", true}} {
		addr := scripted(t, stream, true)
		n := 0
		res, err := Fetch(context.Background(), Config{Addr: addr, Session: c.session, IdleTimeout: 5 * time.Second}, func([]byte) error { n++; return nil })
		if c.ok && (err != nil || n != 1 || res.Session != "SCRIPT") {
			t.Errorf("session %q: %+v, %d messages, %v", c.session, res, n, err)
		}
		if !c.ok && (!errors.Is(err, ErrProtocol) || n != 0) {
			t.Errorf("session %q, accepted for SCRIPT: %+v, %d messages delivered, err %v; want ErrProtocol and none", c.session, res, n, err)
		}
	}
}

// TestFetchStalledChatter: after one message the server sends only
// Unsequenced Data or Debug packets, never the rest of the snapshot. The
// socket never goes quiet, so only Fetch can tell the stall: it is
// ErrStalled after IdleTimeout, as with heartbeats only, rather than a
// fetch that never ends (delivery frozen, the books flagged, no retry).
func TestFetchStalledChatter(t *testing.T) {
	add := itch.AddOrderFields{Header: itch.Header{Locate: 1}, OrderRef: 1, Side: 'B', Shares: 1, Price: 1}
	for _, typ := range []byte{soupbintcp.TypeUnsequencedData, soupbintcp.TypeDebug} {
		t.Run(string(typ), func(t *testing.T) {
			addr := scriptedServe(t, 1, func(sc *soupbintcp.ServerConn) {
				sc.WritePacket(soupbintcp.TypeSequencedData, add.Append(nil)) //nolint:errcheck
				// Chatter until the client goes, for at most 20 s.
				every5ms(sc, typ, []byte("x"), 4000)
			})
			st := new(Stats)
			_, err := Fetch(context.Background(), Config{Addr: addr, IdleTimeout: 200 * time.Millisecond, Stats: st}, func([]byte) error { return nil })
			if !errors.Is(err, ErrStalled) || st.Stalled.Load() != 1 {
				t.Fatalf("err %v (stalled %d), want ErrStalled", err, st.Stalled.Load())
			}
		})
	}
}

// TestFetchCheckSession: Config.CheckSession sees the session the Login
// Accepted names and refuses it before any of the snapshot is read
// (ErrSessionRefused wrapping its error, nothing handed to fn, Refused
// counted); accepting it, the snapshot loads as without it.
func TestFetchCheckSession(t *testing.T) {
	add := itch.AddOrderFields{Header: itch.Header{Locate: 1}, OrderRef: 1, Side: 'B', Shares: 1, Price: 1}
	stream := soupbintcp.AppendPacket(nil, soupbintcp.TypeSequencedData, add.Append(nil))
	stream = soupbintcp.AppendPacket(stream, soupbintcp.TypeSequencedData, AppendSnapshot(nil, 1234))
	no := errors.New("not this one")
	for _, refuse := range []bool{true, false} {
		addr := scripted(t, stream, true)
		st := new(Stats)
		var seen string
		n := 0
		res, err := Fetch(context.Background(), Config{Addr: addr, IdleTimeout: 5 * time.Second, Stats: st,
			CheckSession: func(s string) error {
				seen = s
				if refuse {
					return no
				}
				return nil
			}}, func([]byte) error { n++; return nil })
		if seen != "SCRIPT" {
			t.Errorf("CheckSession saw %q, want SCRIPT", seen)
		}
		if refuse && (!errors.Is(err, ErrSessionRefused) || !errors.Is(err, no) || n != 0 || st.Refused.Load() != 1 || st.Completed.Load() != 0) {
			t.Errorf("refused: %+v, %d messages, refused %d, err %v; want ErrSessionRefused, none", res, n, st.Refused.Load(), err)
		}
		if !refuse && (err != nil || n != 1 || res.NextSeq != 1234 || st.Refused.Load() != 0) {
			t.Errorf("accepted: %+v, %d messages, err %v", res, n, err)
		}
	}
}

// TestParseSnapshotPadding: the Snapshot message's 20-byte sequence number
// is read whatever its justification and fill (spaces, zeros or NULs).
func TestParseSnapshotPadding(t *testing.T) {
	for _, f := range []string{
		"                 123",
		"123                 ",
		"00000000000000000123",
		"123\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
		"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00123",
	} {
		if seq, err := ParseSnapshot([]byte("G" + f)); seq != 123 || err != nil {
			t.Errorf("ParseSnapshot(G%q) = %d, %v; want 123", f, seq, err)
		}
	}
}

// TestAppendSnapshotAlpha: the lab's Snapshot message carries its sequence
// number as GLIMPSE 5.0 types it, Alpha: left-justified, padded on the
// right with spaces (its data types know no right-justified ASCII numbers),
// so every test against the lab server reads the bytes a GLIMPSE server
// sends.
func TestAppendSnapshotAlpha(t *testing.T) {
	if got, want := string(AppendSnapshot(nil, 1234)), "G1234                "; got != want {
		t.Errorf("AppendSnapshot(1234) = %q, want %q", got, want)
	}
	if seq, err := ParseSnapshot(AppendSnapshot(nil, 1<<63)); seq != 1<<63 || err != nil {
		t.Errorf("ParseSnapshot(AppendSnapshot(2^63)) = %d, %v", seq, err)
	}
}

// TestFetchNeverEnds: the server keeps sending ITCH messages and never the
// End of Snapshot (a live SoupBinTCP ITCH port configured in place of
// GLIMPSE streams the day for as long as it runs). Neither IdleTimeout nor
// the peer timeout ever fires; MaxDuration ends the fetch: ErrTooLong,
// counted, rather than a fetch that runs all day (delivery frozen, its
// messages held in memory).
func TestFetchNeverEnds(t *testing.T) {
	add := itch.AddOrderFields{Header: itch.Header{Locate: 1}, OrderRef: 1, Side: 'B', Shares: 1, Price: 1}
	addr := scriptedServe(t, 1, func(sc *soupbintcp.ServerConn) {
		every5ms(sc, soupbintcp.TypeSequencedData, add.Append(nil), 6000) // until the client goes, for at most 30 s
	})
	st := new(Stats)
	res, err := Fetch(context.Background(), Config{Addr: addr, IdleTimeout: 200 * time.Millisecond, MaxDuration: time.Second, Stats: st},
		func([]byte) error { return nil })
	if !errors.Is(err, ErrTooLong) || st.TooLong.Load() != 1 || st.Completed.Load() != 0 || res.NextSeq != 0 || res.Messages == 0 {
		t.Fatalf("err %v (too long %d, completed %d), result %+v; want ErrTooLong after some messages", err, st.TooLong.Load(), st.Completed.Load(), res)
	}
	t.Log(err)
}

// every5ms writes a typ packet of payload every 5 ms, n times at most,
// until the client goes.
func every5ms(sc *soupbintcp.ServerConn, typ byte, payload []byte, n int) {
	for range n {
		if sc.WritePacket(typ, payload) != nil || sc.Flush() != nil {
			return
		}
		select {
		case <-sc.Gone():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestFetchTooManyBytes: a server streaming the day as fast as the link
// goes and never ending the snapshot (a live ITCH port replaying from
// sequence 1 in place of GLIMPSE) ends the fetch at MaxBytes of messages,
// ErrTooLong, counted, fn never handed more: before, every message was
// handed on until MaxDuration (10 minutes by default), the caller holding
// all of them (gigabytes a minute at link speed: an out-of-memory kill).
func TestFetchTooManyBytes(t *testing.T) {
	add := itch.AddOrderFields{Header: itch.Header{Locate: 1}, OrderRef: 1, Side: 'B', Shares: 1, Price: 1}
	msg := add.Append(nil)
	const limit = 64 << 10
	var burst []byte
	for range 2 * limit / len(msg) {
		burst = soupbintcp.AppendPacket(burst, soupbintcp.TypeSequencedData, msg)
	}
	addr := scriptedAt(t, 1, burst, true)
	st := new(Stats)
	var held int
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // the test's bound only
	defer cancel()
	res, err := Fetch(ctx, Config{Addr: addr, MaxBytes: limit, Stats: st},
		func(m []byte) error { held += len(m); return nil })
	if !errors.Is(err, ErrTooLong) || st.TooLong.Load() != 1 || st.Completed.Load() != 0 || res.NextSeq != 0 || held > limit || held < limit-len(msg) {
		t.Fatalf("err %v (too long %d, completed %d), result %+v, %d bytes of messages handed on; want ErrTooLong after %d bytes at most", err, st.TooLong.Load(), st.Completed.Load(), res, held, limit)
	}
	t.Log(err)
}

package rerequest

import (
	"testing"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// FuzzAccept feeds arbitrary datagrams to the answer path: nothing panics,
// and only packets of the session, overlapping the asked range (an answer
// may start before it or end after it: wasAsked) and bringing something
// new, reach the caller.
func FuzzAccept(f *testing.F) {
	s := moldudp64.NewSession("FUZZ")
	b := moldudp64.NewBuilder(s, 10, 0)
	b.Add([]byte("abc"))
	b.Add([]byte("defgh"))
	f.Add(append([]byte(nil), b.Flush()...))
	f.Add(moldudp64.AppendHeader(nil, s, 10, 0))
	f.Add(moldudp64.AppendHeader(nil, s, 12, 3))
	f.Add(moldudp64.AppendHeader(nil, moldudp64.NewSession("OTHER"), 10, 1))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Client{cfg: Config{MaxRequestMessages: 100}, est: make([]estimate, 1)}
		asked := moldudp64.Range{First: 10, Count: 50}
		c.Want(s, asked, 1)
		c.inflight = asked
		c.asked[0], c.askedN = asked, 1
		c.next = 15
		calls := 0
		c.accept(0, data, 2, func(p moldudp64.Packet) {
			calls++
			if p.Session != s || !p.Range().Overlaps(asked) || p.Next() <= 15 || p.Messages() == 0 {
				t.Fatalf("handed on: session %q seq %d count %d", p.Session, p.Seq, p.Count)
			}
			it := p.Iter()
			n := 0
			for _, ok := it.Next(); ok; _, ok = it.Next() {
				n++
			}
			if n != p.Messages() {
				t.Fatalf("packet claims %d messages, carries %d", p.Messages(), n)
			}
		})
		st := c.Stats
		if uint64(calls) != st.Responses || st.Responses+st.Bad()+st.Late != 1 {
			t.Fatalf("one datagram: %d calls, stats %+v", calls, st)
		}
	})
}

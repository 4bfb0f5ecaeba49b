// Package itchgen generates a realistic, deterministic Nasdaq TotalView-ITCH 5.0
// trading day, for tests, benchmarks and demos of the feed handler.
//
//	g, err := itchgen.New(itchgen.Config{Messages: 10_000_000, Symbols: 500, Seed: 1})
//	for msg, ok := g.Next(); ok; msg, ok = g.Next() { ... } // a view, valid until the next call
//	err = g.Write(w)           // or: the whole day as a BinaryFILE
//	st, err := g.WritePcap(w)  // or: MoldUDP64 packets in a pcap (lines A and B, faults)
//
// The same Config (seed included) always yields the same bytes.
//
// The day: system events 'O' and 'S' at 04:00, a stock directory 'R' and a
// trading action 'H' per symbol, Reg SHO 'Y', market participant positions
// 'L', MWCB decline levels 'V' and an IPO quoting period 'K' before the
// open; 'Q' at 09:30 followed by an opening cross 'Q' per symbol; order flow
// until 20:00 (3% before the open, 94% in regular hours, 3% after the close)
// in bursts of messages microseconds apart; 'M' at 16:00 with a closing
// cross per symbol; 'E' at 20:00 and 'C' at 20:05. Scattered through the
// day: LULD pauses and resumes ('H' with an auction collar 'J' and a halt
// cross), an operational halt 'h', DLCR price discovery 'O', RPII 'N', a few
// broken trades 'B' (each of an instrument's latest trade not broken yet,
// under its locate: its scheduled instrument's, or the next one's with such
// a trade) and one MWCB status 'W', so that all 23 message types
// appear.
//
// The order flow follows the message mix of a real day (Mix: A 43.3%,
// D 41.9%, U 8.7%, E 2.5%, I 1.3%, X 1.2%, P 0.5%, F 0.5%, C 0.1%); the
// NOII 'I' messages fall in the imbalance windows 09:25-09:30 and
// 15:50-16:00.
// Symbol activity is Zipf-like (weight 1/rank, ranks shuffled over the
// alphabet), so a few symbols carry most messages. The generator keeps a
// book per symbol (flat arrays): new orders rest around a fair price that
// random-walks, mostly within a few cents of the touch and never crossing
// the other side; deletes, cancels and replaces pick live orders, mostly
// recent ones (short-lived orders) and sometimes any (long-resting ones);
// executions 'E' and 'C' take the order at the front of the queue at the
// best price of the side the fair price moved through; 'P' prints hidden
// trades inside the spread. Order reference numbers and match numbers
// increase through the day; timestamps never go back.
package itchgen

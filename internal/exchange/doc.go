// Package exchange plays the exchange's side of a feed in the lab: it sends
// UDP payloads (MoldUDP64 packets) onto one or two multicast lines, paced
// by a token bucket, bounded by a packet count and a duration, with per-line loss, duplication and reordering injection for
// testing arbitration and gap handling.
//
//	s, err := exchange.NewSender(exchange.Config{
//		Interface: "eth1",
//		Lines:     []exchange.Line{{Group: a, Port: 26400}, {Group: b, Port: 26401, Loss: 0.01}},
//		Rate:      100_000, // packets/s; 0 = as fast as possible
//	})
//	defer s.Close()
//	stats, err := s.Send(ctx, exchange.Packets(pkts))
//
// Every input packet is offered to every line; each line then applies its
// own injection (decided by a seeded PRNG, so runs are repeatable) and
// writes to its own socket. Stats say what was sent and what was injected,
// so a test knows what the receiver should see.
//
// OpenFile turns a BinaryFILE, pcap or pcapng into MoldUDP64 packets for
// Send; the command `feedhandler send` (cmd/feedhandler/send.go) is its CLI.
package exchange

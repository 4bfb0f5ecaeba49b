// Package soupbintcp implements Nasdaq SoupBinTCP 3.00: the framing of its
// logical packets, the packets themselves, a client and the server side of
// a connection (for the project's lab servers).
//
// # Framing
//
// Every logical packet is a 2-byte big-endian Packet Length, which counts
// the 1-byte Packet Type and the payload but not itself, then the type, then
// the payload. TCP may split or merge packets arbitrarily; Reader reassembles
// them. A length of 0 (no type byte), a length above the reader's limit, a
// stream that ends inside a packet, a type not allowed in the direction read
// and a fixed-size packet of the wrong length are errors (ErrEmpty,
// ErrOversized, ErrTruncated, ErrUnknownType, ErrBadLength, all wrapping
// ErrMalformed) counted in Stats; nothing in this package panics on any
// input.
//
// # Packets (byte for byte from the SoupBinTCP 3.00 specification)
//
// Server to client:
//
//	'+' Debug              text (free form)
//	'A' Login Accepted     Session 10 alpha (right-justified, "Left padded with spaces")
//	                       Sequence Number 20 numeric (ASCII digits, right-justified, left-padded with spaces):
//	                       the sequence number of the next Sequenced Data packet to be sent
//	'J' Login Rejected     Reject Reason Code 1 alpha: 'A' not authorized, 'S' session not available
//	'S' Sequenced Data     one higher-level message; its sequence number is implicit (counted from the login's)
//	'U' Unsequenced Data   one higher-level message
//	'H' Server Heartbeat   no payload
//	'Z' End of Session     no payload
//
// Client to server:
//
//	'L' Login Request      Username 6 alpha, Password 10 alpha, Requested Session 10 alpha
//	                       (right-justified as in Login Accepted; all spaces: the currently
//	                       active session), Requested Sequence Number
//	                       20 numeric (0: start with the next message generated)
//	'U' Unsequenced Data   one higher-level message
//	'R' Client Heartbeat   no payload
//	'O' Logout Request     no payload
//
// Alpha fields are ASCII, left-justified and padded on the right with
// spaces, but for the session, which the specification shows "Left padded
// with spaces" (right-justified) in Login Accepted and which the Requested
// Session names too; numeric fields are ASCII digits right-justified and
// padded on the left with spaces. Parsers accept leading and trailing
// padding, spaces or NULs (some servers fill fixed fields with NULs), and
// trim nothing else.
//
// # Heartbeats
//
// Each side makes sure it never stays silent for HeartbeatInterval (the
// specification: a heartbeat whenever more than 1 second passes without
// sending): it sends a heartbeat ('H' from the server, 'R' from the
// client) once it has sent nothing for half the interval, looking every
// quarter interval, so that the longest silence is three quarters of it.
// It treats a peer it has heard nothing from for PeerTimeout (the
// specification suggests 15 seconds) as dead. Both are configurable.
//
// # Client
//
//	c, err := soupbintcp.Dial(ctx, soupbintcp.ClientConfig{Addr: a, Username: u, Password: p, Sequence: 1})
//	defer c.Close()
//	for {
//		typ, payload, err := c.Next() // 'S', 'U', 'H' or '+' (debug)
//		...
//	}
//	c.Logout()
//
// A Login Rejected answer is ErrLoginRejected wrapped in a *RejectError
// that carries the reason; End of Session is ErrEndOfSession; silence for
// PeerTimeout is ErrPeerTimeout. Close (or cancelling the context given to
// Dial, when WatchContext is used) unblocks a pending Next promptly.
//
// The password is never logged or put in an error.
package soupbintcp

// Package glimpse fetches a Nasdaq GLIMPSE 5.0 snapshot over SoupBinTCP 3.00
// (package soupbintcp): the state of the TotalView-ITCH 5.0 books at one
// point of the day, used to join late or to rebuild books after a loss.
//
//	res, err := glimpse.Fetch(ctx, glimpse.Config{Addr: a, Username: u, Password: p}, func(msg []byte) error {
//		books.Apply(itch.Msg(msg)) // msg is valid only during the call
//		return nil
//	})
//	// then apply the live ITCH messages with MoldUDP64 sequence number >= res.NextSeq
//
// # Protocol
//
// GLIMPSE 5.0 is a point-to-point feed carried only over SoupBinTCP. Fetch
// logs in with the configured username, password and session (all spaces
// when Session is "", the currently active session) and requested
// sequence number 1: the specification says GLIMPSE users "must login to
// SoupBinTCP for sequence 1 to correctly receive data". Each Sequenced Data
// packet then carries one message, in the ITCH 5.0 formats ("NASDAQ GLIMPSE
// 5.0 uses the same data formats as the TotalView-ITCH 5.0 data feed"):
// System Event 'S', Stock Directory 'R', Stock Trading Action 'H', Reg SHO
// 'Y', Operational Halt 'h', RPII 'N', and an Add Order 'A' or 'F' (with
// attribution) for every order resting in the book, carrying its original
// order reference number, its remaining shares and its price, in time
// priority within each price level. The spin ends with the Snapshot
// message, GLIMPSE 5.0 section "Snapshot Message" (section 1.7 of the
// current document, 4.7 in older editions):
//
//	offset 0, length 1:  Message Type 'G' ("End of Snapshot")
//	offset 1, length 20: ITCH Sequence Number, Alpha: ASCII digits,
//	                     left-justified, padded on the right with spaces
//	                     (GLIMPSE 5.0's alpha fields); read with spaces or
//	                     NULs on either side
//
// 21 bytes, without the locate/tracking/timestamp header of ITCH messages.
// Its sequence number "denote[s] where firms should begin processing
// real-time updates via the NASDAQ TotalView-ITCH product": it is the
// sequence number of the next TotalView-ITCH (MoldUDP64) message after the
// state the snapshot reflects. Hence
//
//	Result.NextSeq = the Snapshot message's ITCH Sequence Number
//
// the snapshot reflects ITCH messages 1..NextSeq-1, and the caller applies
// live messages with sequence number >= NextSeq on top of it (and drops the
// buffered ones below it). A value of 0 or one that is not a number is
// ErrProtocol. (The type is 'G' in GLIMPSE 5.0, as in the Wireshark
// dissectors of the Open Markets Initiative for Nasdaq GLIMPSE 5.0; 'M' is
// not a GLIMPSE 5.0 message type.)
//
// After the Snapshot message Fetch sends Logout Request and closes the
// connection; on every other return it sends Logout Request too, best
// effort (the write waits at most 100 ms), so the server frees the session.
//
// # Errors
//
// Sentinels for errors.Is: ErrLoginRejected (wrapping a
// *soupbintcp.RejectError with the reason 'A' not authorized or 'S'
// session not available), ErrEndOfSession (End of Session before the
// Snapshot message), ErrStalled (nothing from the server, or only
// heartbeats, Debug or Unsequenced Data packets, for IdleTimeout: a server
// that keeps the connection alive but stops sending the snapshot is
// stalled too), ErrProtocol (malformed,
// truncated or invalid SoupBinTCP framing, a connection closed before the
// Snapshot message, a Sequenced Data packet that is not a whole ITCH 5.0
// message, a bad Snapshot message, a Login Accepted naming a sequence
// number past 1: the spin would start past its beginning, or another
// session than a non-blank one asked for), ErrSessionRefused (Config.CheckSession
// refused the session the Login Accepted names, before any of the
// snapshot was read), ErrTooLong (no Snapshot message within
// Config.MaxDuration of the login, default 10 minutes, or within
// Config.MaxBytes of messages, default 2 GiB: a server that keeps sending
// data and never ends the snapshot, as a live SoupBinTCP ITCH port
// configured in its place does, replaying the day as fast as the link
// goes). A cancelled ctx returns ctx.Err()
// promptly. An error returned by fn ends the fetch and is returned as is.
//
// Sequenced messages of a type ITCH 5.0 does not define are skipped and
// counted (Stats.UnknownMessages), so that a type added to GLIMPSE later
// does not make every snapshot fail.
//
// The password is never logged and never part of an error.
package glimpse

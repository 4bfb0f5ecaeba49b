// Package itch decodes and encodes Nasdaq TotalView-ITCH 5.0 messages.
//
// # Views
//
// Every one of the 23 message types has a zero-copy view, a named []byte
// (AddOrder, OrderExecuted, StockDirectory, ...) whose accessors read the
// fields in place with encoding/binary big-endian loads; nothing is copied
// and nothing is allocated. Msg is the untyped view: Type, Locate, Tracking,
// Timestamp. Convert a Msg to its typed view after checking its Type:
//
//	switch m.Type() {
//	case itch.TypeAddOrder:
//		a := itch.AddOrder(m)
//		book.Add(a.Locate(), a.OrderRef(), a.Side(), a.Shares(), a.Price())
//	}
//
// Views index their bytes directly: they need at least Length(type) bytes,
// which Scanner, Check and Counters.Accept guarantee. Messages longer than
// their type's length are accepted (Nasdaq may append fields); the views read
// the published prefix. Symbols (Symbol) and MPIDs (MPID) are fixed arrays.
// Prices are Price(4) uint32 (4 implied decimals) except the MWCB levels of
// 'V', which are Price(8) uint64. Timestamps are 48-bit ns since midnight.
//
// # Encoding
//
// Every type has an XxxFields struct holding every field (the common header
// as the embedded Header). (*XxxFields).Append appends the encoded message to
// a caller's buffer and AppendBlock appends it framed; neither allocates when
// dst has room. The view's Fields method decodes every field into the struct,
// so Fields and Append round-trip. Views and encoders are generated from one
// table by gen_messages.go (go generate ./feed/itch), which checks that each
// type's fields add up to its published length.
//
// # Framing
//
// BinaryFILE and MoldUDP64 both frame messages as blocks: a big-endian u16
// length, then the message. AppendBlock writes one. Scanner iterates the
// blocks of a buffer in place without allocating:
//
//   - unknown message types are skipped by their block length and counted
//     (Counters.Unknown); framing is never lost on an unknown type;
//   - a message shorter than its type's length (or an empty block) stops the
//     scan with a *LengthError naming the type, the offset and both lengths
//     (errors.Is(err, ErrShortMessage)); framing is intact, so Scanner.Resume
//     continues with the next block;
//   - a block whose length runs past the end of the buffer stops the scan
//     with a *FrameError (errors.Is(err, ErrTruncated)); Scanner.Rest returns
//     the incomplete block for a streaming reader to complete.
//
// Validate scans a whole buffer and returns its counts and first error.
// Transports that frame messages themselves (MoldUDP64's iterator) validate
// each message with Counters.Accept (counting) or Check (returning an error).
// Counters is a small struct of those counts meant to be embedded in the
// caller's statistics.
//
// AppendPrice4, AppendPrice8 and AppendTimestamp format prices and
// timestamps for tools without allocating.
//
// Decode returns any message as a freshly allocated *XxxFields behind the
// Encoder interface, for tools and tests; hot paths use the views.
package itch

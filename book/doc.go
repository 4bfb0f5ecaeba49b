// Package book maintains full-depth, order-by-order (L3) books of Nasdaq
// TotalView-ITCH 5.0 instruments, keyed by stock locate.
//
// # Model
//
// A Books holds every instrument of one writer (a whole feed, or the locates
// a pipeline shard owns; a process may hold many Books). Books.Apply takes one
// ITCH message and applies it:
//
//   - 'R' announces a locate and its symbol; messages for a locate never
//     announced are ignored and counted (Stats.UnknownLocate).
//   - 'A' and 'F' add an order at the tail of its price level.
//   - 'E' executes at the order's price, 'C' at the message's price (a
//     non-printable 'C' leaves the last trade and volume alone), 'X' cancels
//     shares; an order left with no shares is removed.
//   - 'D' deletes an order.
//   - 'U' removes the original order and adds the new reference with the same
//     side and instrument, at the tail of its level (it loses queue position).
//   - 'P' and 'Q' update the last trade and cumulative volume only; 'B'
//     counts a broken trade (the volume is not corrected: the message carries
//     only the match number).
//   - 'H' (trading state), 'h' (operational halt, Nasdaq market 'Q' only),
//     'Y' (Reg SHO) update the instrument's state; 'S' the market-wide system
//     event (Books.SystemEvent).
//   - Other types change nothing.
//
// Apply reports the locate whose state changed so a publisher can mark it
// dirty; locate 0 with changed=true is a market-wide change ('S').
// The numeric methods (AddOrder, Execute, Cancel, Delete, Replace, ...) are the
// same operations without the ITCH decoding.
//
// # Inconsistent input
//
// Nothing in the input can make Apply panic or corrupt an instrument other
// than the one the message names. Each inconsistency is counted by kind in
// Stats and the message is ignored, except:
//
//   - an execute or cancel of more shares than the order has removes the
//     whole order (OverExecution, OverCancel);
//   - a replace whose new reference is live, or with 0 shares, still removes
//     the original (DuplicateAdd, ZeroShares);
//   - an E/C/X/D/U naming an order of another locate is ignored
//     (LocateMismatch), so an instrument is never touched through another's
//     messages.
//
// A duplicate add of a live reference keeps the original order.
//
// # Capacity
//
// New allocates everything up front from Config: MaxOrders order slots,
// MaxLevels price levels, MaxLocates books and a reference table. An add
// beyond a capacity is dropped, counted (OrderCapacity, LevelCapacity) and
// Books.Err returns the first such error (errors.Is ErrOrderCapacity, ...).
// The only allocation after New is a side's level ladder growing past its
// largest size so far (amortized doubling); steady-state Apply allocates
// nothing.
//
// # Structures
//
// Orders live in one flat array indexed by int32 (32 bytes each, no Go
// pointers, so the garbage collector never scans them) and form an intrusive
// doubly-linked FIFO per price level, which gives queue position
// (Books.QueueAhead, Book.Queue). Order references are found through an
// open-addressing, linear-probing table whose hash is the reference itself:
// Nasdaq references are dense and increasing, so consecutive orders land in
// consecutive slots and the table behaves as a direct-indexed array with
// collision fallback; deletion shifts entries back (no tombstones).
// Each side of a book is a ladder: levels sorted by price with the best last,
// so the best bid and offer are O(1), depth N reads N entries, and finding a
// level for an add walks a few rungs from the top before bisecting.
//
// # Concurrency
//
// A Books has a single writer and no locks. Readers (Depth, BBO, Stats)
// must run on the writer's goroutine or be synchronized by the caller.
package book

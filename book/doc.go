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
//     non-printable 'C' leaves the last trade and volume alone; one whose
//     printable flag is neither 'Y' nor 'N' is applied as non-printable
//     and counted, Stats.BadState), 'X' cancels shares; an order left with
//     no shares is removed. The resting order keeps its price.
//   - 'D' deletes an order.
//   - 'U' removes the original order and adds the new reference with the same
//     side and instrument, at the tail of its level (it loses queue position).
//   - 'P' and 'Q' update the last trade and cumulative volume only.
//   - 'B' reverses the trade it names by match number: its shares come off
//     the volume and, if it was the last trade, the last trade before it
//     that stands becomes the last trade again. Executions and trades are
//     remembered by match number in a bounded table (Config.TradeMemory,
//     about the day's last million trades by default); a B of a trade no
//     longer remembered, never seen or of another instrument is counted
//     (Stats.BrokenUnmatched) and changes only the broken count. A B of a
//     match number two printed trades of the instrument carried (unique in
//     a day, says the specification) is counted in Stats.DuplicateMatch, an
//     inconsistency: the later print comes off, and the earlier one, not
//     remembered, leaves the last trade 0@0 if it was the one before.
//   - 'H' (trading state), 'h' (operational halt, Nasdaq market 'Q' only),
//     'Y' (Reg SHO) update the instrument's state; 'S' the market-wide system
//     event (Books.SystemEvent). One whose state, action, market code or
//     event code is none of the values ITCH 5.0 defines is counted
//     (Stats.BadState, an inconsistency) and changes nothing: the
//     instrument (the market, for 'S') keeps its last state, so a byte the
//     handler cannot read never turns a halted stock into one of unknown
//     state, nor publishes an event code no reader knows.
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
//     the original (DuplicateAdd, ZeroShares); one whose new reference is
//     the original's is applied, the order replaced, and counted
//     (DuplicateAdd);
//   - an add of a reference live under another locate adds an order:
//     references are each instrument's (Books.AddOrder), so an E/C/X/D/U
//     naming an order of another locate is of an unknown reference
//     (UnknownRefExecute, ...), and an instrument is never touched through
//     another's messages. Its book is made of its own messages alone,
//     whichever instruments share the Books (the handler's shards).
//
// A duplicate add of a reference live under the same locate keeps the
// original order.
//
// # Capacity
//
// New allocates the order storage up front from Config (and touches it, asking
// for transparent huge pages on Linux, so no page fault or TLB storm hits the
// apply path): RefTableSize home slots plus Overflow slots of 32 bytes, the
// overflow hash table, TradeMemory trade records of 32 bytes, MaxLevels price
// levels of 32 bytes, a block of 2*MaxLevels rungs (8 bytes) for the level
// ladders and MaxLocates books. An add beyond MaxOrders live
// orders, beyond the overflow slots, or beyond MaxLevels live price levels is
// dropped and counted (OrderCapacity, LevelCapacity); Books.Err returns the
// first such error (errors.Is ErrOrderCapacity, ...). A side's ladder grows
// by doubling into arrays from the rung block, reusing those other ladders
// outgrew, so Apply neither allocates nor page-faults (TestApplyAllocs per
// message type, TestLadderGrowthAllocs for growth); only once the block is
// used up does a ladder grow on the Go heap. Reset empties everything for a
// new day and keeps the storage.
//
// # Structures
//
// Orders live in one flat array indexed by int32 (32 bytes each, no Go
// pointers, so the garbage collector never scans them) and form an intrusive
// doubly-linked FIFO per price level, which gives queue position
// (Books.QueueAhead, Book.Queue). The first RefTableSize entries are
// direct-indexed by order reference: the order with reference r lives at
// r mod RefTableSize. Nasdaq references are dense and increasing, so a lookup
// is one load and consecutive adds write consecutive slots. An order whose
// home slot is still held by an older live order goes to an overflow slot,
// found through a small open-addressing table (linear probing, deletion by
// backward shift, no tombstones) that is consulted only while some order is
// in overflow. Each add prefetches the home slot of a reference a few ahead
// (on amd64), so the next adds find their slots in cache.
//
// Deletes, executes, cancels and replace name older orders, whose slots are
// rarely in cache. A caller holding messages ahead of the one it applies
// calls Books.Prefetch on the message PrefetchAhead ahead, or
// Books.PrefetchBlocks on a run of length-prefixed blocks: `feedhandler
// replay` runs a second cursor over the file, and the live path prefetches
// each delivered packet's messages before applying them
// (BenchmarkApplyBatch measures the live shapes). Neither changes a result.
//
// Price levels (total shares, order count, FIFO head and tail, 32 bytes)
// live in one pool of MaxLevels entries, handed out from a free list, and
// stay where they are while they live: an order holds the index of its
// level, so an execute, cancel or delete reaches the level in one load,
// whatever levels were added or removed around it. Each side of a book is
// a ladder: one array of rungs (price key and level index, 8 bytes) sorted
// by price with the best last, so the best bid and offer are O(1), depth N
// reads N rungs, and an add finds its level by walking a few rungs from the
// top before bisecting. Each side's best rung is also on the book's first
// cache line (the line every order message reads), so an add at the best
// price, and the removal of a side's last level, leave the ladder's line
// alone. A removal that empties a level (on 1 M-message
// generated days about one in five removals with 50 symbols, half with 500,
// four in five with 5,000) takes the top rung off, with no search and no
// call, when it is the level's (the best level: a third of those with 50
// symbols, two in three with 500, four in five with 5,000); otherwise it
// searches the
// ladder from the top for the rung, moves the better rungs down by one and
// frees the level.
//
// # Output
//
// Books.WriteJSON writes the books as the `feedhandler replay --books-out`
// JSON document; Book.Depth fills a caller's buffer without allocating.
// Book.Top writes both sides' top levels into a publisher's vectors, and
// Book.TopChanged only those that changed since the publisher last wrote
// them: each side keeps the best-first rank of the best level changed
// since (Book.Changed, a compare and a store on the apply path), for one
// publisher per Books, which clears it (the handler's Publisher).
//
// # Concurrency
//
// A Books has a single writer and no locks. Readers (Depth, BBO, Stats)
// must run on the writer's goroutine or be synchronized by the caller.
package book

// Package shm publishes normalized order book snapshots into shared memory
// and reads them from other processes. It is feedhandler's public interface
// to trading strategies; docs/SHM.md specifies the file layout for readers
// in other languages.
//
// # Files
//
// Each feed is one file, /dev/shm/NAME (or any path containing a slash),
// created by one Writer process and mapped by any number of Reader
// processes. The file holds a versioned header (magic, LayoutVersion, writer
// pid, start time, generation, heartbeat, geometry), a locate index, an
// instrument directory (locate, symbol), a change journal, one slot per
// instrument and, in its last 8 bytes, a copy of the generation (the
// trailer: a file cut past its first page and grown back keeps its header,
// not its trailer). The memory holds no Go pointers.
//
// # Slots
//
// A slot holds the latest snapshot of one instrument: a FlatBuffer of
// bookfb.Snapshot (schema proto/book.fbs) behind a seqlock. The writer makes
// the slot's sequence odd, writes the FlatBuffer, and makes it even again;
// a reader copies the FlatBuffer into its own buffer between two loads of
// the sequence and retries when they differ or are odd, so Read never
// returns a torn snapshot. Sequence/2 is the slot's version: the number of
// snapshots published into it.
//
// # Journal
//
// Every publish appends (locate, version) to a ring of JournalLen records.
// A Follower reads it in order to learn which instruments changed without
// scanning every slot. Book shards publish concurrently: each claims a
// record with an atomic fetch-add on the shared head, so there is one
// journal per feed file and records appear in claim order. A follower that
// falls more than JournalLen records behind gets ErrOverrun and must rescan
// (Reader.Version tells which slots changed).
//
// # Writer
//
//	w, err := shm.Create(shm.Config{Name: "itch", Instruments: 12000, Depth: 10})
//	w.Register(locate, "AAPL")         // from the Stock Directory message
//	w.Rebind(locate, "MSFT", epoch)    // a new session's symbol: the epoch orders bindings (see Rebind)
//	w.Publish(&snap)                   // per changed locate, at batch boundaries
//	w.Heartbeat()                      // at least every HeartbeatInterval
//	w.Close()                          // marks the feed closed; the file stays
//
// Publish is conflating by construction: the pipeline marks locates dirty
// while applying a batch of messages and publishes each once with its
// final state; the slot always ends at the newest snapshot. It allocates
// nothing and is safe for concurrent use as long as no two goroutines
// publish the same locate at once. It takes no lock, and Close does not
// wait for it: publishes must end before Close is called. The other writer
// methods may run while Close does (see Writer.Close).
//
// # Reader
//
// Open maps a feed read-only; Instruments and Lookup list the directory;
// Read copies a consistent snapshot into a caller-owned buffer and returns a
// View (the generated accessors over that buffer) without allocating;
// Follow/Poll/Wait follow the journal (a poll that finds nothing new once
// the writer closed the feed says so, as Check, and so does one that looks
// at a dead writer's heartbeat, about once a heartbeat interval: see
// Follower.Poll); Check reports a closed (ErrClosed),
// dead (ErrWriterDead: its pid gone and two heartbeats missed, or the
// heartbeat older than the stale limit) or restarted
// (ErrRestarted: a new file replaced the one mapped, or another generation
// re-initialized it in place; Close and Open again) writer, and ErrFormat
// for a file truncated under the mapping, or cut and grown back (its
// trailer zeroed). A reader started before the writer gets ErrNotExist (OpenWait
// retries). A file of another layout version is ErrLayoutVersion.
package shm

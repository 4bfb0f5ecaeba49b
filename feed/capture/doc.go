// Package capture writes every line datagram the handler receives to a
// pcap file, so that a day can be replayed (feedhandler replay reads the
// file) and the exchange's data audited.
//
// The receive thread must never block or allocate for it. Put copies each
// datagram of a batch (with its line, source and receive timestamp) into a
// preallocated single-producer/single-consumer byte ring and publishes the
// batch with one atomic store; an ordinary goroutine drains the ring into
// the file through a 1 MiB buffer. When the ring is full the datagram is
// left out of the capture (never out of the feed) and counted
// (Stats.Dropped); the drainer logs one warning per run of drops. The
// datagrams left out (so, or by a failed write) are said in the file, a
// marker frame before the next frame written (mark.go). A failed
// write (a full disk) is logged once per run of failures and counted
// (Stats.WriteErrors, Stats.WriteLost: only what did not reach the file
// whole); the file is cut back to its last whole record so that it stays
// readable, and capturing goes on; a disk full at Open is the same (the
// header waits for the first write that succeeds). A file deleted or
// truncated while written to is noticed at the next write, logged, counted
// (Stats.Deleted), and the capture goes on in a new file. A file the
// capture goes on from is flushed to the disk (fsync) off the drainer,
// before it is closed (sync.go). Close drains the ring, flushes and
// closes the file (fsync too), and
// returns the last write's error when it failed (the capture's end lost).
//
// The file is a nanosecond pcap of Ethernet/IPv4/UDP frames: the sockets
// hand over UDP payloads, so each frame's headers are synthetic, built from
// the datagram's source address and its line's group and port (the
// destination a replay tells the lines apart by). The Ethernet source
// address is a batch mark instead: where the receive thread found every
// line empty before the datagram (Put's drainedAt), so that a replay ticks
// its arbiter where the live one ticked (Mark, FileMark). A run of receive
// calls that failed between two batches (Failed) is a marker frame before
// the next, not an IP datagram, so that a replay advances its arbiter
// there too (mark.go). The re-request answers the receive thread hands
// over (Recovered) are frames of their own, no line's, and a snapshot
// (Freeze, SnapshotMessages, Snapshot, or Resumed without one, or
// Discarded at a session change) and a
// re-request given up (GaveUp) marker frames, so that a replay applies
// the answers and rebuilds the books from the snapshots where the handler
// did. Their records have the ring's last 4 KiB to themselves (eventRoom),
// and a snapshot's messages are not copied: the receive thread hands the
// snapshot's buffer to the drainer (a record of its own), which writes
// them from it and gives it back (SnapshotBuffer), so that the receive
// thread never waits for the disk whatever the snapshot's size. A file the writer closed ends with a marker frame
// that says so (the stop, or the next file: End); a file without it last
// was cut short (the process killed). Every file starts with a marker
// frame that says its place in the capture (Begin: the capture's run, the
// file's index in it, the name of the file before), so that a replay of
// a capture's files finds one missing, out of order or another run's, and
// a replay of a later file alone says what it lacks. A rotation waits
// while a snapshot is taken or a range re-requested is open, up to twice
// RotateSize, so that one file holds it whole; a file opened while a
// range re-requested in the file before was not yet filled says it
// again after that frame (RerequestAgain), so that a replay of it alone
// holds for the answers it holds, as the handler held; one opened while
// the handler's arbiter held behind lines that went back (Behind: a
// sequence restart held) says where (HeldBehind), so that a replay of it
// alone holds there too.
//
//	c, err := capture.Open(capture.Config{Path: p, Lines: lines, Log: log})
//	...
//	c.Failed(now, drainedAt)   // the receive thread, at a failed call
//	c.Put(pkts[:n], drainedAt) // the receive thread, per batch, before Release
//	c.Recovered(answer, now, drainedAt) // the receive thread, per re-request answer
//	...
//	err = c.Close() // after the receive thread stopped
package capture

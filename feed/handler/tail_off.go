//go:build !tailtrace

package handler

import "github.com/marketfeed/feedhandler/feed/rx"

// tailTrace: build with -tags tailtrace to trace each run-to-completion
// batch (see batchTrace) for the paced benchmark's tail attribution. Off,
// the checks compile away.
const tailTrace = false

// tailState is empty without the tag: the shard carries no trace
// fields, and its methods are never called (their calls sit behind
// tailTrace).
type tailState struct{}

func (*tailState) begin(int64, []rx.Packet, uint64)        {}
func (*tailState) close()                                  {}
func (*tailState) mark(int64)                              {}
func (*tailState) end(int64, int64, []run, uint64, uint64) {}
func (*tailState) setTrace([]batchTrace)                   {}
func (*tailState) traced() []batchTrace                    { return nil }
func (*tailState) setIdleGap(int64)                        {}

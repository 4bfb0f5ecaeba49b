//go:build !tailtrace

package handler

// tailTrace: build with -tags tailtrace to trace each run-to-completion
// batch (see batchTrace) for the paced benchmark's tail attribution. Off,
// the checks compile away.
const tailTrace = false

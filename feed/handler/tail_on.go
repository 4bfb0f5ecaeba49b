//go:build tailtrace

package handler

// tailTrace is on: each run-to-completion batch leaves a batchTrace
// (BenchmarkPipelinePaced attributes its slow messages). It adds one
// clock read per packet to the path.
const tailTrace = true

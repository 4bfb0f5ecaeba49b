//go:build stagetiming

package handler

// stageTiming is on: each run-to-completion batch is timed by stage
// (BenchmarkPipelinePaced reports them). The clock reads add to the path.
const stageTiming = true

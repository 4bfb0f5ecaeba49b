//go:build !stagetiming

package handler

// stageTiming: build with -tags stagetiming to time the stages of each
// run-to-completion batch (see shard.stages). Off, the checks compile away.
const stageTiming = false

//go:build race

package shm

// raceEnabled: the test binary is race-built, and so is the writer process
// it starts (the test binary again), 5-10 times slower.
const raceEnabled = true

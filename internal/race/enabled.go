//go:build race

package race

// Enabled: the binary is race-built (go build/test -race).
const Enabled = true

package xsk_test

import (
	"os"
	"testing"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestMain fails the run when the tests leak sockets or BPF objects.
func TestMain(m *testing.M) { os.Exit(netlab.RunCheckingFDs(m)) }

package demo

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

// TestSenderPacketsFile: the packets a run gives its sender process reach
// it whole, to the last record, whatever the file's size: a day whose
// file's last part (past its last full write buffer) was under 4 KiB lost
// that part, its session's end with it (TestSoak, seed 11164: the sender
// took 12952 of 12958 packets, and the run waited for the end until its
// timeout).
func TestSenderPacketsFile(t *testing.T) {
	for _, c := range []struct{ n, size int }{
		{3, 100},    // a file of 306 bytes
		{2092, 500}, // 1 MiB and 2008 bytes
		{2100, 500}, // 1 MiB and 6024 bytes
	} {
		t.Run(fmt.Sprintf("%dx%d", c.n, c.size), func(t *testing.T) {
			pkts := make([][]byte, c.n)
			for i := range pkts {
				pkts[i] = make([]byte, c.size)
				pkts[i][0], pkts[i][1] = byte(i>>8), byte(i)
			}
			path := filepath.Join(t.TempDir(), "packets")
			if err := writePackets(path, pkts); err != nil {
				t.Fatal(err)
			}
			got, err := readPackets(path)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, pkts, slices.Equal) {
				t.Errorf("read %d packets of the %d written, or others", len(got), len(pkts))
			}
		})
	}
}

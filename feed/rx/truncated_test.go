package rx

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestTruncatedCountedAsDropped: a line datagram too big for a receive
// slot is lost (MSG_TRUNC). The socket and io_uring backends count it in
// Extra "truncated", which nothing exports; it must also count in
// Stats.Dropped (receive_dropped_total), as the AF_XDP backend's too-big
// frames do (xsk rx_dropped).
func TestTruncatedCountedAsDropped(t *testing.T) {
	for _, backend := range []string{BackendSocket, BackendUring} {
		t.Run(backend, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			lines := labLines(lab)[:1]
			r := openBackend(t, lab, backend, Config{Lines: lines, PollTimeout: 20 * time.Millisecond})
			defer r.Close()
			fd := lab.UDPSocket(t, lab.Src)
			to := netip.AddrPortFrom(lines[0].Group, lines[0].Port)
			errc := netlab.SendPaced(fd, to, 2, 0, func(i int) []byte {
				if i == 0 {
					return make([]byte, 3000) // over any slot: truncated
				}
				return []byte("marker")
			})
			time.Sleep(20 * time.Millisecond)
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			pkts := make([]Packet, 8)
			var got []string
			for deadline := time.Now().Add(5 * time.Second); len(got) == 0 || got[len(got)-1] != "marker"; {
				if time.Now().After(deadline) {
					t.Fatalf("marker not received; got %q", got)
				}
				n, err := r.Receive(pkts)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range pkts[:n] {
					got = append(got, fmt.Sprintf("%.6s", p.Data))
				}
				r.Release(pkts[:n])
			}
			st := r.Stats()
			if st.Extra.Get("truncated") != 1 || st.Dropped != 1 {
				t.Fatalf("truncated %d, Dropped %d; want 1 and 1", st.Extra.Get("truncated"), st.Dropped)
			}
		})
	}
}

// TestSlotSizeDatagram: the socket and io_uring backends take line
// datagrams of up to 2048 bytes, a receive slot, and count larger ones in
// Stats.Dropped (docs/TUNING.md section 6). io_uring's buffers also hold
// its recvmsg header, the source address and the control messages in
// front of the payload: with 2048-byte buffers it took only 1984 bytes
// and dropped the datagrams of 1985 to 2048 bytes the socket backend
// delivers. A 9000-byte MTU lets them through unfragmented.
func TestSlotSizeDatagram(t *testing.T) {
	sent := [][]byte{[]byte("m0"), make([]byte, 1985), make([]byte, slotSize), make([]byte, slotSize+1), []byte("end")}
	want := [][]byte{[]byte("m0"), make([]byte, 1985), make([]byte, slotSize), []byte("end")}
	for i := range sent[1:4] {
		for j := range sent[1+i] {
			sent[1+i][j] = byte(i + j)
		}
	}
	copy(want[1], sent[1])
	copy(want[2], sent[2])
	for _, backend := range []string{BackendSocket, BackendUring} {
		t.Run(backend, func(t *testing.T) {
			sendOdd(t, netlab.Options{Prefix: "fs", MTU: 9000}, backend, sent, want, 1)
		})
	}
}

package handler

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestRerequestKernelDropsExported: the re-request socket, granted 64 KiB
// in a network namespace of its own, is flooded by its server's address
// (600 datagrams of 1400 bytes) while the receive thread does not read
// it. The copy of the counters reads the kernel's drops (rerequest's
// TestKernelDropsCounted checks them against Udp RcvbufErrors):
// feedhandler_recovery_receive_dropped_total has them, and the first are
// logged once at warn level with the buffer and the remedy, however many
// copies and drops follow. Before, they were counted nowhere: an answer
// overflowing the buffer showed only as its messages asked again.
func TestRerequestKernelDropsExported(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "h178hd"})
	srv, server := lab.BoundUDPSocket(t, lab.Src)
	h, logs, rec := loggedRecovery(t, RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{server}, Timeout: time.Minute, RecvBuffer: 64 << 10},
		Do: func(fn func() error) error { return lab.Do(lab.Dst, fn) }})
	now := time.Now().UnixNano()
	rec.client.Want(moldudp64.NewSession("DROPS"), moldudp64.Range{First: 1, Count: 1}, now)
	rec.poll(now)
	_, client := netlab.Recv(t, srv, make([]byte, 64))
	flood := make([]byte, 1400)
	var all Stats
	all.Arbiter = h.arb.Stats
	const logged = "the kernel dropped re-request answers"
	for round := range 2 {
		if err := <-netlab.SendPaced(srv, client, 600, 100*time.Microsecond, func(int) []byte { return flood }); err != nil {
			t.Fatal(err)
		}
		rec.copyStats(&all.Recovery)
		rec.copyStats(&all.Recovery)
		got := scalar(t, &all, "recovery_receive_dropped_total")
		if got == 0 || got != rec.client.Stats.KernelDrops {
			t.Fatalf("round %d: recovery_receive_dropped_total %d, want the client's kernel drops %d, above 0 (600 x 1400 bytes against 64 KiB)",
				round, got, rec.client.Stats.KernelDrops)
		}
		if n := strings.Count(logs.String(), logged); n != 1 || !strings.Contains(logs.String(), `"recv_buffer":65536`) {
			t.Fatalf("round %d: logged %d times, want once with the buffer: %s", round, n, logs.String())
		}
		for range 10 {
			rec.poll(now) // read what the buffer held
		}
	}
}

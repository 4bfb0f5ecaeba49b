package rerequest_test

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/privilege"
)

// TestRecvBufferForce: a socket's receive buffer asked above
// net.core.rmem_max (read, never changed) is granted whole with
// cap_net_admin (SO_RCVBUFFORCE), and RecvBufferShort says nothing. On a
// thread without cap_net_admin (what a process without it gets) the
// fallback, SO_RCVBUF, grants rmem_max, which RecvBufferShort reports
// once, for a socket of New and for one opened after Forget alike. Before,
// only SO_RCVBUF was asked: rmem_max (about 208 KiB by default) capped it
// whatever the capabilities, silently.
func TestRecvBufferForce(t *testing.T) {
	if eff, err := privilege.Effective(); err != nil || eff&privilege.NetAdmin == 0 {
		t.Skipf("needs cap_net_admin, to compare with and without it (effective %v, %v)", eff, err)
	}
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	rmem, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || rmem <= 0 || rmem > 1<<28 {
		t.Skipf("net.core.rmem_max %q: want one that twice fits an int's socket option", b)
	}
	cfg := rerequest.Config{Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, RecvBuffer: 2 * rmem}
	open := func() *rerequest.Client {
		c, err := rerequest.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	if got := open().RecvBufferShort(); got != 0 {
		t.Fatalf("with cap_net_admin: granted %d bytes of %d asked (rmem_max %d), want all (SO_RCVBUFFORCE)", got, cfg.RecvBuffer, rmem)
	}

	var capless *rerequest.Client
	var openErr error
	if err := privilege.WithoutOnThread(privilege.NetAdmin, func() { capless, openErr = rerequest.New(cfg, nil) }); err != nil || openErr != nil {
		t.Fatal(err, openErr)
	}
	defer capless.Close()
	if got, again := capless.RecvBufferShort(), capless.RecvBufferShort(); got != rmem || again != 0 {
		t.Fatalf("without cap_net_admin: RecvBufferShort %d then %d, want rmem_max %d once, then 0", got, again, rmem)
	}

	// Opened as root, its server's socket opened again after Forget
	// without cap_net_admin (the process dropped it since).
	c := open()
	c.Forget()
	if err := privilege.WithoutOnThread(privilege.NetAdmin, func() {
		c.Want(moldudp64.NewSession("RCVBUF"), moldudp64.Range{First: 1, Count: 5}, 1)
		c.Poll(1, func(moldudp64.Packet) {})
	}); err != nil {
		t.Fatal(err)
	}
	if got := c.RecvBufferShort(); got != rmem || c.Stats.Requests != 1 {
		t.Fatalf("socket opened again without cap_net_admin: RecvBufferShort %d, want rmem_max %d; requests %d, want 1", got, rmem, c.Stats.Requests)
	}
}

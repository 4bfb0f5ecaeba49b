package preflight

import (
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/internal/privilege"
)

// TestRerequestBuffer: recovery.rerequest.recv_buffer (4 MiB by default)
// above net.core.rmem_max is warned about, with the remedy and the
// request size it leaves, when this process lacks cap_net_admin (the
// re-request sockets get rmem_max: SO_RCVBUFFORCE is refused); it is
// fine with cap_net_admin, and not said at all when rmem_max holds it or
// no re-request server is configured. Before, check said nothing of the
// re-request sockets, whatever the backend.
func TestRerequestBuffer(t *testing.T) {
	if eff, err := privilege.Effective(); err != nil || eff&privilege.NetAdmin == 0 {
		t.Skipf("needs cap_net_admin, to compare with and without it (effective %v, %v)", eff, err)
	}
	const servers = "recovery:\n  rerequest:\n    servers: [10.0.0.1:26400]\n"
	rerequest := func(fs []Finding) []string {
		var out []string
		for _, f := range topic(fs, "buffers") {
			if strings.Contains(f, "recovery.rerequest.recv_buffer") {
				out = append(out, f)
			}
		}
		return out
	}
	small := tree(t, map[string]string{"proc/sys/net/core/rmem_max": "212992\n"})
	cfg := feedConfig(t, "eth9", servers)

	var capless []Finding
	if err := privilege.WithoutOnThread(privilege.NetAdmin, func() { capless = Run(cfg, small) }); err != nil {
		t.Fatal(err)
	}
	got := rerequest(capless)
	if len(got) != 1 {
		t.Fatalf("without cap_net_admin, rmem_max 208 KiB: %q, want one warning", got)
	}
	for _, want := range []string{"warn ", "recovery.rerequest.recv_buffer 4 MiB is above net.core.rmem_max 0.2 MiB", "asks at most 184 messages (max_request_messages 2000)", "sysctl -w net.core.rmem_max=4194304", "cap_net_admin"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("%q lacks %q", got[0], want)
		}
	}

	if got := rerequest(Run(cfg, small)); len(got) != 1 || !strings.HasPrefix(got[0], "ok ") {
		t.Errorf("with cap_net_admin: %q, want one ok", got)
	}
	large := tree(t, map[string]string{"proc/sys/net/core/rmem_max": "8388608\n"})
	if got := rerequest(Run(cfg, large)); got != nil {
		t.Errorf("rmem_max 8 MiB: %q, want nothing", got)
	}
	if got := rerequest(Run(feedConfig(t, "eth9", ""), small)); got != nil {
		t.Errorf("no re-request server: %q, want nothing", got)
	}
}

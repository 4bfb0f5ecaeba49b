package main

import (
	"net/netip"
	"os"
	"testing"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/internal/demo"
)

// TestDemoFromFeed: demo --feed takes the feed file's shm.slots, shm.mode
// and shm.group (it ignored them before: the demo's file had 16384 slots,
// mode 0640 and the process's group whatever the YAML said), and the keys
// it took already.
func TestDemoFromFeed(t *testing.T) {
	const base = "feed: {name: lab}\nlines:\n  a: {interface: eth0, group: 239.9.0.1, port: 3001}\n  b: {interface: eth0, group: 239.9.0.2, port: 3002}\n" +
		"receive: {backend: socket}\nbook: {depth: 5}\n"
	for _, tc := range []struct {
		shm   string
		slots int
		mode  os.FileMode
		group string
		name  string
	}{
		{"shm: {name: labfile, slots: 24576, mode: \"0600\", group: 0}\n", 24576, 0o600, "0", "labfile"},
		{"", config.DefaultSHMSlots, config.DefaultSHMMode, "", "lab"},
	} {
		cfg, err := config.Parse("t.yaml", []byte(base+tc.shm))
		if err != nil {
			t.Fatal(err)
		}
		var o demo.Options
		demoFromFeed(cfg, &o)
		if o.ShmSlots != tc.slots || o.ShmMode != tc.mode || o.ShmGroup != tc.group || o.ShmName != tc.name {
			t.Errorf("%q: shm name %q slots %d mode %04o group %q, want %q %d %04o %q",
				tc.shm, o.ShmName, o.ShmSlots, o.ShmMode, o.ShmGroup, tc.name, tc.slots, tc.mode, tc.group)
		}
		if o.Backend != "socket" || o.Depth != 5 || o.LineA != netip.MustParseAddrPort("239.9.0.1:3001") || o.LineB != netip.MustParseAddrPort("239.9.0.2:3002") {
			t.Errorf("%q: backend %q depth %d lines %v %v", tc.shm, o.Backend, o.Depth, o.LineA, o.LineB)
		}
	}
}

package rerequest

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/race"
)

// TestFailureRunReportAllocatesNothing: a server whose route flaps has
// its sends fail with the same errno, run after run, all day; each run is
// reported (SendError, logged on the receive thread). The report of a
// run after the first allocates nothing: it was built with fmt.Errorf for
// every run. Its text is as before.
func TestFailureRunReportAllocatesNothing(t *testing.T) {
	f := newFailureRuns([]netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:9"), netip.MustParseAddrPort("192.0.2.2:9")},
		"rerequest: send a request to %s: %w")
	const want = "rerequest: send a request to 192.0.2.2:9: network is unreachable"
	run := func() {
		f.fail(1, unix.ENETUNREACH)
		if err := f.next(); err == nil || err.Error() != want {
			t.Fatalf("reported %v, want %q", err, want)
		}
		if err := f.next(); err != nil {
			t.Fatalf("reported twice: %v", err)
		}
		f.end(1)
	}
	run()
	if a, exact := race.AllocsPerRun(t, 100, run); exact && a != 0 {
		t.Fatalf("a run of send failures reported allocates %v times", a)
	}
	f.fail(1, unix.EACCES) // another errno: built once more
	if err := f.next(); err == nil || err.Error() != "rerequest: send a request to 192.0.2.2:9: permission denied" {
		t.Fatalf("reported %v", err)
	}
}

package rx

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/race"
)

// TestLineWatchLogsAllocateNothing: the line watch's lines, logged on the
// receive thread when a line's interface goes (deleted) and when the
// group is joined again on the device that took its name, allocate
// nothing: the rejoin's line boxed the group (a netip.Addr) for zerolog's
// Stringer, which then put its text on the heap. A link that is deleted
// and created again (a driver reset, a re-created virtual interface) may
// do so many times a day. Driven on lo by hand: the device is found gone
// (a name no device has), then back under the same index (gone, then
// found: its memberships went with the old device, joined again).
func TestLineWatchLogsAllocateNothing(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	lo, err := ifIndex(fd, "lo")
	if err != nil {
		t.Fatal(err)
	}
	group := netip.MustParseAddr("239.7.7.157")
	if err := membership(fd, unix.IP_ADD_MEMBERSHIP, group, lo); err != nil {
		t.Fatal(err)
	}
	w := lineWatch{log: zerolog.New(io.Discard).With().Timestamp().Logger(), every: time.Millisecond}
	socks := []lineSocket{{fd: fd, line: LineA, group: group, ifname: "lo", ifindex: lo}}
	s := &socks[0]
	goneAndBack := func() {
		s.ifname = "fh157nodev" // no such device: gone
		w.at = time.Time{}
		w.checkNow(socks)
		s.ifname = "lo" // back, the same index: joined again
		w.at = time.Time{}
		w.checkNow(socks)
	}
	goneAndBack()
	if a, exact := race.AllocsPerRun(t, 20, goneAndBack); exact && a != 0 {
		t.Fatalf("an interface gone and back, logged, allocates %v times", a)
	}
	if gone, rejoins := w.gone.Load(), w.rejoins.Load(); gone != 22 || rejoins != 22 || s.gone || s.rejoinFailed {
		t.Fatalf("gone %d, rejoins %d (want 22, 22), gone now %v, rejoin failed %v", gone, rejoins, s.gone, s.rejoinFailed)
	}
}

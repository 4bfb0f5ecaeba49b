package xsk

import (
	"errors"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/race"
)

// driverENXIO plays a zero-copy driver's ndo_xsk_wakeup answering ENXIO
// of a bound socket (wakeSyscall).
func driverENXIO(int) error { return unix.ENXIO }

// TestUnboundOnlyWhenTheKernelSays: Wakeup and Check report ErrUnbound
// when the kernel unbound the socket (its device deleted), and only then.
// A zero-copy driver's ndo_xsk_wakeup answers ENXIO too, of a socket still
// bound (mlx5 while a channel is reopened without its XSK state, igc
// without its pool: ethtool -L, -G, an MTU change); taken for an
// unbinding, the AF_XDP backend would retire a socket that works again
// once the driver is done, and its lines would receive nothing until a
// restart. veth has no zero-copy, so the driver's answer is played
// (wakeSyscall); the socket, its binding, the link going down and the
// device's deletion are real.
func TestUnboundOnlyWhenTheKernelSays(t *testing.T) {
	defer func(orig func(int) error) { wakeSyscall = orig }(wakeSyscall)
	lab := netlab.ForTest(t, netlab.Options{Prefix: "u191"})
	var s *Socket
	if err := lab.Do(lab.Dst, func() error {
		ifi, err := net.InterfaceByName(lab.DstIf)
		if err != nil {
			return err
		}
		s, err = Open(Config{Ifindex: ifi.Index, FillSize: 64, RxSize: 64, ZeroCopy: ZeroCopyOff})
		return err
	}); err != nil {
		if errors.Is(err, ErrNotSupported) {
			netlab.SkipOrFail(t, "AF_XDP socket", 5, 11, err)
		}
		t.Fatal(err)
	}
	defer s.Close()

	expect := func(state string, unbound bool) {
		t.Helper()
		if err := s.Check(); errors.Is(err, ErrUnbound) != unbound || (!unbound && err != nil) {
			t.Errorf("%s: Check() = %v; unbound %v", state, err, unbound)
		}
		wakeSyscall = driverENXIO
		err := s.Wakeup()
		wakeSyscall = wakeup
		if err == nil || errors.Is(err, ErrUnbound) != unbound {
			t.Errorf("%s, the driver's wakeup answering ENXIO: Wakeup() = %v; want an error, wrapping ErrUnbound: %v", state, err, unbound)
		}
		if err := s.Wakeup(); errors.Is(err, ErrUnbound) != unbound || (!unbound && err != nil) {
			t.Errorf("%s: Wakeup() = %v; unbound %v", state, err, unbound)
		}
	}
	expect("bound", false)
	if a, exact := race.AllocsPerRun(t, 100, func() { s.Check() }); exact && a != 0 {
		t.Errorf("Check of a bound socket allocates %v times, want 0", a)
	}
	if err := lab.SetLink(lab.Dst, lab.DstIf, false); err != nil {
		t.Fatal(err)
	}
	expect("bound, the link down", false)
	if err := lab.SetLink(lab.Dst, lab.DstIf, true); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Exec(lab.Src, "ip", "link", "del", lab.SrcIf); err != nil {
		t.Fatal(err)
	}
	expect("the device deleted", true)
}

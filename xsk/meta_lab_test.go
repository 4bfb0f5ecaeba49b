package xsk_test

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/xsk"
	"golang.org/x/sys/unix"
)

func taiNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_TAI, &ts)
	return ts.Nano()
}

// TestSocketMeta: the metadata the steering program puts in front of a
// redirected frame arrives in the UMEM just before the frame's data, in
// copy mode (veth has no zero-copy), with native and generic XDP, with and
// without UMEM headroom; its time lies between the sending and the pickup.
func TestSocketMeta(t *testing.T) {
	if err := bpf.ProbeMeta(); errors.Is(err, bpf.ErrNoMetaHelper) {
		_, _, release := netlab.KernelVersion()
		t.Skipf("kernel %s: %v, so no frame carries metadata", release, err)
	}
	for _, mode := range []bpf.Mode{bpf.ModeNative, bpf.ModeGeneric} {
		for _, headroom := range []int{0, 64} {
			t.Run(fmt.Sprintf("%v/headroom%d", mode, headroom), func(t *testing.T) {
				lab := netlab.ForTest(t, netlab.Options{Prefix: "xm"})
				st := attach(t, lab, mode)
				u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, Frames: 256, Headroom: headroom})
				if err != nil {
					t.Fatal(err)
				}
				defer u.Close()
				s := openSocket(t, lab, xsk.Config{Ifindex: st.ifindex, UMEM: u, FillSize: 256, RxSize: 256})
				defer s.Close()
				if err := st.prog.SetSocket(0, s.FD()); err != nil {
					t.Fatal(err)
				}
				snd := newSender(t, lab)
				const n = 100
				start := taiNow()
				errc := snd.sendPaced(netip.AddrPortFrom(group, port), n, func(int) []byte { return []byte("stamped") })
				descs := make([]xsk.Desc, 32)
				addrs := make([]uint64, 0, 32)
				got := 0
				deadline := time.Now().Add(10 * time.Second)
				for got < n {
					if time.Now().After(deadline) {
						t.Fatalf("received %d of %d frames", got, n)
					}
					if _, err := s.Wait(50 * time.Millisecond); err != nil {
						t.Fatal(err)
					}
					k := s.Receive(descs)
					picked := taiNow()
					addrs = addrs[:0]
					for _, d := range descs[:k] {
						meta := s.Meta(d, bpf.MetaLen)
						tai, ok := bpf.ParseMeta(meta)
						if !ok {
							t.Fatalf("frame %d at %#x: no metadata before the data (% x)", got, d.Addr, meta)
						}
						if tai < start || tai > picked {
							t.Fatalf("frame %d: kernel time %d outside [%d (send start), %d (pickup)]", got, tai, start, picked)
						}
						bpf.ClearMeta(meta)
						got++
						addrs = append(addrs, d.Addr)
					}
					s.Fill(addrs)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				c, err := st.prog.Counters()
				if err != nil {
					t.Fatal(err)
				}
				if c.NoMeta != 0 {
					t.Errorf("program counted %d frames without metadata", c.NoMeta)
				}
			})
		}
	}
}

// TestMetaBounds: Meta returns nil when the bytes would reach into the
// previous frame.
func TestMetaBounds(t *testing.T) {
	u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, Frames: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if m := u.Meta(2048+256, 12); len(m) != 12 {
		t.Errorf("Meta(frame 1 + 256, 12) has %d bytes, want 12", len(m))
	}
	if m := u.Meta(2048+8, 12); m != nil {
		t.Errorf("Meta(frame 1 + 8, 12) = %d bytes, want nil", len(m))
	}
	if m := u.Meta(0, 1); m != nil {
		t.Errorf("Meta(0, 1) = %d bytes, want nil", len(m))
	}
}

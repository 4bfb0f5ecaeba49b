package rx

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// lineWatch follows the line sockets' interfaces for the socket and
// io_uring backends (and the xdp backend's fallback sockets). A line's group membership belongs to one device (its
// ifindex): when the interface is deleted the kernel drops the membership
// with it, and an interface created again under the same name is a new
// device (a new ifindex) that the socket never joined, so the line stays
// silent for good while the socket itself reports nothing. A link that
// only goes down and up keeps its device, and its membership.
//
// check, called by Receive when it is about to wait, and through busy
// when it returns packets without waiting, at most once a poll timeout,
// looks each line's interface up by name (one ioctl per line): it logs an
// interface gone, once (Stats().Extra "line_interfaces_gone"), and joins
// the group again on the device that took the name (counted in
// "line_rejoins").
type lineWatch struct {
	log     zerolog.Logger
	every   time.Duration
	at      time.Time
	batches uint32        // batches Receive returned without waiting (busy)
	gone    atomic.Uint64 // interfaces found gone ("line_interfaces_gone")
	rejoins atomic.Uint64 // groups joined again on a new device ("line_rejoins")
}

// addStats adds the watch's counters to s.
func (w *lineWatch) addStats(s *Stats) {
	s.Extra.Add("line_interfaces_gone", w.gone.Load())
	s.Extra.Add("line_rejoins", w.rejoins.Load())
}

// busyCheckBatches is how many batches a busy receive loop (one that
// returns packets without waiting) returns between two readings of the
// clock for its slow checks (lineWatch.busy, xdpRx.checkBound): the
// checks themselves run at most once a poll timeout.
const busyCheckBatches = 64

// busy is called by Receive when it returns packets without waiting.
// Without it a line whose interface was re-created while another line
// keeps the receiver busy (never about to wait) would stay silent until
// every line is quiet at once: check would not run. It costs a counter per
// batch; every busyCheckBatches batches it reads the clock and runs check,
// which does its lookups once a poll timeout.
func (w *lineWatch) busy(socks []lineSocket) {
	if w.batches++; w.batches%busyCheckBatches == 0 {
		w.checkNow(socks)
	}
}

func (w *lineWatch) checkNow(socks []lineSocket) { w.check(time.Now(), socks) }

func (w *lineWatch) check(now time.Time, socks []lineSocket) {
	if now.Sub(w.at) < w.every {
		return
	}
	w.at = now
	for i := range socks {
		s := &socks[i]
		idx, err := ifIndex(s.fd, s.ifname)
		switch {
		case errors.Is(err, unix.ENODEV):
			if !s.gone {
				s.gone = true
				w.gone.Add(1)
				w.log.Error().Str("line", s.line.String()).Str("interface", s.ifname).Int("ifindex", s.ifindex).
					Msg("rx: the line's interface is gone (deleted): the line receives nothing until a device of that name is back, then joins its group on it again")
			}
		case err != nil:
			// Not an answer about the device: ask again next time.
		case idx != s.ifindex || s.gone:
			// A new device under the name (gone and back with the same
			// index too: the old device's memberships went with it).
			err := s.rejoin(idx)
			if err != nil {
				if !s.rejoinFailed {
					s.rejoinFailed = true
					w.log.Error().Err(err).Str("line", s.line.String()).Str("interface", s.ifname).Int("ifindex", idx).
						Msg("rx: the line's interface is a new device and joining the group on it failed; trying again")
				}
				continue
			}
			w.rejoins.Add(1)
			var group [len("255.255.255.255")]byte // Stringer boxed the address and put its text on the heap
			w.log.Warn().Str("line", s.line.String()).Str("interface", s.ifname).Int("old_ifindex", s.ifindex).Int("ifindex", idx).
				Bytes("group", s.group.AppendTo(group[:0])).Msg("rx: the line's interface is a new device (deleted and created again): joined the group on it again")
			s.ifindex, s.gone, s.rejoinFailed = idx, false, false
		}
	}
}

// rejoin leaves the group on the line's old device (the kernel still
// lists the membership under its index) and joins it on device idx.
func (s *lineSocket) rejoin(idx int) error {
	membership(s.fd, unix.IP_DROP_MEMBERSHIP, s.group, s.ifindex) // gone with the device, or dropped now
	return membership(s.fd, unix.IP_ADD_MEMBERSHIP, s.group, idx)
}

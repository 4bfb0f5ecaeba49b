package demo

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// RerequestPort is the lab re-request server's UDP port (on the sender's
// side of the lab).
const RerequestPort = 26400

// Recovery adds the lab's recovery servers to a run. The re-request
// server runs on the sender's side of the lab and serves the whole day
// (what the exchange sent, including what was dropped on both lines).
type Recovery struct {
	Rerequest    bool          // run a re-request server and point the handler at it
	MaxPerAnswer int           // most messages per answer (0: as asked)
	AnswerLoss   float64       // probability to lose each answer packet
	AnswerDelay  time.Duration // delay before each answer
	Refuse       bool          // the server reads requests and never answers
	// Timeout and Retries of the handler's client (0: defaults).
	Timeout time.Duration
	Retries int
	// MaxRequestMessages of the handler's client (0: default).
	MaxRequestMessages int
}

// recoveryLab is what startRecovery started.
type recoveryLab struct {
	rr *exchange.RerequestServer
}

func (l *recoveryLab) close() {
	if l.rr != nil {
		l.rr.Close()
	}
}

// startRecovery starts the servers o.Recovery asks for and fills in the
// handler's recovery config.
func startRecovery(lab *netlab.Lab, o *Options, hc *handler.Config) (*recoveryLab, error) {
	rl := &recoveryLab{}
	ro := o.Recovery
	if ro == nil {
		return rl, nil
	}
	hist := dayHistory(o.Day)
	hc.Recovery.Do = func(fn func() error) error { return lab.Do(lab.Dst, fn) }
	if ro.Rerequest {
		err := lab.Do(lab.Src, func() error {
			var err error
			rl.rr, err = exchange.NewRerequestServer(exchange.RerequestConfig{
				Listen:      netip.AddrPortFrom(lab.SrcIP, RerequestPort),
				Session:     o.Day.Session,
				Message:     hist.Message,
				MaxMessages: ro.MaxPerAnswer,
				Loss:        ro.AnswerLoss,
				Delay:       ro.AnswerDelay,
				Refuse:      ro.Refuse,
				Seed:        11,
			})
			return err
		})
		if err != nil {
			return rl, fmt.Errorf("demo: re-request server: %w", err)
		}
		hc.Recovery.Rerequest = rerequest.Config{
			Servers:            []netip.AddrPort{rl.rr.Addr()},
			Timeout:            ro.Timeout,
			Retries:            ro.Retries,
			MaxRequestMessages: ro.MaxRequestMessages,
		}
	}
	return rl, nil
}

// dayHistory records every message of the day for the lab's servers.
func dayHistory(d *Day) *exchange.History {
	h := new(exchange.History)
	for _, p := range d.Packets {
		h.Record(p)
	}
	return h
}

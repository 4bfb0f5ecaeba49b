package main

import (
	"flag"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/exchange"
)

// rerequestFlags are `feedhandler send`'s re-request server options.
type rerequestFlags struct {
	listen *string
	max    *int
	loss   *float64
	delay  *time.Duration
	refuse *bool
	linger *time.Duration
}

func addRerequestFlags(fs *flag.FlagSet) *rerequestFlags {
	return &rerequestFlags{
		listen: fs.String("rerequest-listen", "", "serve MoldUDP64 re-requests of what was sent on this UDP ADDR:PORT"),
		max:    fs.Int("rerequest-max", 0, "most messages per re-request answer (0: as asked)"),
		loss:   fs.Float64("rerequest-loss", 0, "probability to lose each re-request answer packet"),
		delay:  fs.Duration("rerequest-delay", 0, "delay before each re-request answer"),
		refuse: fs.Bool("rerequest-refuse", false, "read re-requests and never answer"),
		linger: fs.Duration("rerequest-linger", 5*time.Second, "keep serving re-requests this long after the last packet"),
	}
}

// lingers reports whether the re-request server keeps the command alive
// after the file.
func (f *rerequestFlags) lingers() bool { return *f.listen != "" && *f.linger > 0 }

// start runs the re-request server when asked for. wrap records every
// packet the sender takes; stop lingers, then closes the server and
// reports its counters.
func (f *rerequestFlags) start(session string) (wrap func(iter.Seq[[]byte]) iter.Seq[[]byte], stop func(out io.Writer), err error) {
	if *f.listen == "" {
		return func(s iter.Seq[[]byte]) iter.Seq[[]byte] { return s }, func(io.Writer) {}, nil
	}
	ap, err := netip.ParseAddrPort(*f.listen)
	if err != nil {
		return nil, nil, fmt.Errorf("re-request listen address: %w", err)
	}
	hist := new(exchange.History)
	srv, err := exchange.NewRerequestServer(exchange.RerequestConfig{
		Listen: ap, Session: moldudp64.NewSession(session), Message: hist.Message,
		MaxMessages: *f.max, Loss: *f.loss, Delay: *f.delay, Refuse: *f.refuse, Seed: 1,
	})
	if err != nil {
		return nil, nil, err
	}
	log.Info().Str("listen", srv.Addr().String()).Msg("send: re-request server")
	wrap = func(pkts iter.Seq[[]byte]) iter.Seq[[]byte] {
		return func(yield func([]byte) bool) {
			for p := range pkts {
				hist.Record(p)
				if !yield(p) {
					return
				}
			}
		}
	}
	stop = func(out io.Writer) {
		time.Sleep(*f.linger)
		srv.Close()
		st := srv.Stats()
		fmt.Fprintf(out, "re-request server: %d requests (%d bad), %d answer packets with %d messages, %d lost, %d refused\n",
			st.Requests, st.BadRequests, st.Answered, st.Messages, st.Lost, st.Refused)
	}
	return wrap, stop, nil
}

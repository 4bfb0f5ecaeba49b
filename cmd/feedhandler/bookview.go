package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

func init() {
	register(&command{name: "bookview", summary: "show the books published in shared memory (live, or --once [--json])", run: runBookview})
}

func runBookview(args []string) error { return bookview(args, os.Stdout) }

func bookview(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bookview", flag.ContinueOnError)
	name := fs.String("shm", "", "feed name under /dev/shm, or a path (required)")
	symbol := fs.String("symbol", "", "show the full published depth of one symbol")
	once := fs.Bool("once", false, "print once and exit")
	asJSON := fs.Bool("json", false, "with --once: print every published book as JSON")
	withState := fs.Bool("state", false, "with --once --json: wrap the books as {\"writer\": STATE, \"books\": BOOKS} and exit 0 whatever the writer's state")
	interval := fs.Duration("interval", 500*time.Millisecond, "refresh interval of the live view")
	rows := fs.Int("rows", 30, "instruments shown in the live view")
	wait := fs.Duration("wait", 0, "wait this long for the feed to appear")
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: feedhandler bookview --shm NAME [--wait D] [--symbol SYM] [--rows N] [--interval D] [--once [--json [--state]]]")
		fs.PrintDefaults()
		fmt.Fprintln(os.Stderr, "\nWith --once, the exit status is 3 when the writer closed, 4 when it is dead,\n5 when it restarted (the state is on stderr), after printing its last books; 1 on errors.")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || fs.NArg() != 0 {
		fs.Usage()
		return errors.New("bookview: --shm NAME is required")
	}
	if *asJSON && !*once {
		return errors.New("bookview: --json needs --once")
	}
	if *withState && !*asJSON {
		return errors.New("bookview: --state needs --once --json")
	}
	r, err := shm.OpenWait(*name, *wait, 50*time.Millisecond)
	if err != nil {
		return err
	}
	defer func() { r.Close() }()
	v := &viewer{r: r, out: out, symbol: *symbol, rows: *rows, buf: make([]byte, r.Info().MaxSnapshot)}
	if *once {
		// The state first: books read after it are at least as fresh.
		return v.once(checkWriter(r), *asJSON, *withState)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(stop)
	return v.live(*name, *interval, stop)
}

// once prints the books once, after the writer's state was taken. A check
// that failed for another reason than the writer's state (the file
// truncated under the mapping: ErrFormat) is returned, exit status 1,
// without reading: a read of the mapping past the file's end faults.
func (v *viewer) once(state writerState, asJSON, withState bool) error {
	if state.State == "unknown" {
		return fmt.Errorf("bookview: %w", state.err)
	}
	var err error
	switch {
	case withState:
		return v.writeStateJSON(state)
	case asJSON:
		err = v.writeJSON(v.out)
	default:
		v.status = state.describe()
		v.collect()
		err = v.render(false)
	}
	if err == nil && state.err != nil {
		err = &writerStateError{state: state}
	}
	return err
}

// viewer renders a feed.
type viewer struct {
	r      *shm.Reader
	out    io.Writer
	symbol string
	rows   int
	buf    []byte

	f       *shm.Follower
	updates map[uint16]uint64 // journal records per locate in this interval
	status  string
	lines   []line
}

// line is one instrument's top of book.
type line struct {
	locate     uint16
	symbol     string
	state      bookfb.TradingState
	flags      bookfb.Flags
	bid, ask   shm.Level
	hasBid     bool
	hasAsk     bool
	last       uint32
	lastShares uint64
	volume     uint64
	messages   uint64
	seq        uint64
	activity   uint64
}

// writeJSON prints the books with resting orders byte for byte as
// book.Books.WriteJSON (`replay --books-out`) does, so that the two files
// compare with cmp: keys are symbols in order ("SYMBOL#locate" for a second
// locate with the same symbol), levels [price, shares, orders] best first.
// The shm writer keeps one live entry per symbol (a symbol bound to a second
// locate moves there), so a stream that announces one symbol at two locates
// in a session, which ITCH does not do, gives books that differ from the
// file's.
func (v *viewer) writeJSON(out io.Writer) error {
	var list []book.JSONBook
	seen := map[string]bool{}
	ins := v.r.Instruments()
	sort.Slice(ins, func(i, j int) bool { return ins[i].Locate < ins[j].Locate })
	for _, in := range ins {
		s, err := v.r.Read(in.Locate, v.buf)
		if errors.Is(err, shm.ErrNoData) {
			continue
		}
		if err != nil {
			return err
		}
		if s.BidsLength() == 0 && s.AsksLength() == 0 {
			continue
		}
		e := book.JSONBook{Key: string(s.Symbol())}
		if seen[e.Key] {
			e.Key += "#" + strconv.Itoa(int(in.Locate))
		}
		seen[e.Key] = true
		for i := 0; ; i++ {
			l, ok := s.Bid(i)
			if !ok {
				break
			}
			e.Bids = append(e.Bids, book.Level(l))
		}
		for i := 0; ; i++ {
			l, ok := s.Ask(i)
			if !ok {
				break
			}
			e.Asks = append(e.Asks, book.Level(l))
		}
		list = append(list, e)
	}
	if err := book.WriteBooksJSON(out, list); err != nil {
		return fmt.Errorf("bookview: %w", err)
	}
	return nil
}

// collect reads the top of every instrument's book and sorts by activity:
// journal updates in the last interval, then messages applied since the
// session started or the last rebuild (the snapshot's messages).
func (v *viewer) collect() {
	v.lines = v.lines[:0]
	for _, in := range v.r.Instruments() {
		s, err := v.r.Read(in.Locate, v.buf)
		if err != nil {
			continue
		}
		l := line{locate: in.Locate, symbol: in.Symbol, state: s.TradingState(), flags: s.Flags(),
			last: s.LastTradePrice(), lastShares: s.LastTradeShares(), volume: s.Volume(),
			messages: s.Messages(), seq: s.Seq(), activity: v.updates[in.Locate]}
		l.bid, l.hasBid = s.Bid(0)
		l.ask, l.hasAsk = s.Ask(0)
		v.lines = append(v.lines, l)
	}
	sort.SliceStable(v.lines, func(i, j int) bool {
		a, b := &v.lines[i], &v.lines[j]
		if a.activity != b.activity {
			return a.activity > b.activity
		}
		if a.messages != b.messages {
			return a.messages > b.messages
		}
		return a.symbol < b.symbol
	})
}

func (v *viewer) live(name string, interval time.Duration, stop <-chan os.Signal) error {
	v.f = v.r.Follow()
	v.updates = map[uint16]uint64{}
	dst := make([]shm.Update, 256)
	next := time.Now()
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		if now := time.Now(); !now.Before(next) {
			v.status = "live"
			switch err := v.r.Check(); {
			case errors.Is(err, shm.ErrRestarted):
				log.Info().Str("feed", v.r.Path()).Msg("writer restarted, reattaching")
				r, err := shm.Open(name)
				if err != nil {
					return err
				}
				v.r.Close()
				v.r, v.f = r, r.Follow()
				v.buf = make([]byte, r.Info().MaxSnapshot)
				v.status = "restarted"
			case errors.Is(err, shm.ErrFormat):
				// Truncated under the mapping: reading it would fault.
				return fmt.Errorf("bookview: %w", err)
			case err != nil:
				v.status = err.Error()
			}
			v.collect()
			if err := v.render(true); err != nil {
				return err
			}
			clear(v.updates)
			next = now.Add(interval)
		}
		n, err := v.f.Wait(dst, time.Until(next), shm.WaitOptions{Spin: 1, CheckEvery: interval})
		if errors.Is(err, shm.ErrFormat) {
			return err // truncated under the mapping, as above
		}
		if err != nil && !errors.Is(err, shm.ErrOverrun) {
			// Closed, dead or restarted: keep showing the last books, slowly.
			time.Sleep(min(time.Until(next), interval))
			continue
		}
		for _, u := range dst[:n] {
			v.updates[u.Locate]++
		}
	}
}

func price(p uint32) string { return fmt.Sprintf("%d.%04d", p/10000, p%10000) }

func stateName(s bookfb.TradingState) string {
	switch s {
	case bookfb.TradingStateTrading:
		return "T"
	case bookfb.TradingStateHalted:
		return "H"
	case bookfb.TradingStatePaused:
		return "P"
	case bookfb.TradingStateQuotationOnly:
		return "Q"
	}
	return "-"
}

func flagNames(f bookfb.Flags) string {
	var names []string
	for bit := bookfb.Flags(1); bit != 0; bit <<= 1 {
		if f&bit != 0 {
			names = append(names, bit.String())
		}
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

func (v *viewer) render(clearScreen bool) error {
	var b strings.Builder
	if clearScreen {
		b.WriteString("\x1b[H\x1b[2J")
	}
	info := v.r.Info()
	status := v.status
	if status == "" {
		if err := v.r.Check(); err != nil {
			status = err.Error()
		} else {
			status = "live"
		}
	}
	fmt.Fprintf(&b, "%s  writer pid %d since %s  heartbeat %s ago  depth %d  %d instruments  [%s]\n",
		v.r.Path(), info.WriterPid, info.StartTime.Format("15:04:05"), heartbeatAge(v.r).Round(time.Millisecond),
		info.Depth, len(v.lines), status)
	if v.f != nil {
		fmt.Fprintf(&b, "journal: %d overruns, %d records lost\n", v.f.Overruns(), v.f.Lost())
	}
	if v.symbol != "" {
		v.renderSymbol(&b)
	} else {
		fmt.Fprintf(&b, "%-8s %6s %2s %10s %12s %12s %10s %12s %12s %8s\n",
			"SYMBOL", "LOCATE", "ST", "BID SIZE", "BID", "ASK", "ASK SIZE", "LAST", "VOLUME", "UPDATES")
		for i, l := range v.lines {
			if v.rows > 0 && i >= v.rows {
				break
			}
			bidSz, bid, ask, askSz := "", "", "", ""
			if l.hasBid {
				bidSz, bid = fmt.Sprint(l.bid.Shares), price(l.bid.Price)
			}
			if l.hasAsk {
				askSz, ask = fmt.Sprint(l.ask.Shares), price(l.ask.Price)
			}
			st := stateName(l.state)
			if l.flags&bookfb.FlagsPossiblyStale != 0 {
				st += "!"
			}
			fmt.Fprintf(&b, "%-8s %6d %2s %10s %12s %12s %10s %12s %12d %8d\n",
				l.symbol, l.locate, st, bidSz, bid, ask, askSz, price(l.last), l.volume, l.activity)
		}
	}
	_, err := io.WriteString(v.out, b.String())
	return err
}

// renderSymbol prints the published ladder of one symbol.
func (v *viewer) renderSymbol(b *strings.Builder) {
	locate, ok := v.r.Lookup(v.symbol)
	if !ok {
		fmt.Fprintf(b, "%s: not registered\n", v.symbol)
		return
	}
	s, err := v.r.Read(locate, v.buf)
	if err != nil {
		fmt.Fprintf(b, "%s: %v\n", v.symbol, err)
		return
	}
	fmt.Fprintf(b, "%s locate %d  state %s  flags %s  seq %d  messages %d  version %d\n",
		v.symbol, locate, s.TradingState(), flagNames(s.Flags()), s.Seq(), s.Messages(), s.Version)
	fmt.Fprintf(b, "last %s x %d  volume %d  levels %d bid / %d ask  published %s\n",
		price(s.LastTradePrice()), s.LastTradeShares(), s.Volume(), s.BidLevels(), s.AskLevels(),
		time.Unix(0, s.PublishTime()).Format("15:04:05.000000"))
	fmt.Fprintf(b, "%8s %10s %12s | %-12s %-10s %-8s\n", "ORDERS", "SIZE", "BID", "ASK", "SIZE", "ORDERS")
	for i := 0; i < max(s.BidsLength(), s.AsksLength()); i++ {
		bo, bs, bp, ap, as, ao := "", "", "", "", "", ""
		if l, ok := s.Bid(i); ok {
			bo, bs, bp = fmt.Sprint(l.Orders), fmt.Sprint(l.Shares), price(l.Price)
		}
		if l, ok := s.Ask(i); ok {
			ap, as, ao = price(l.Price), fmt.Sprint(l.Shares), fmt.Sprint(l.Orders)
		}
		fmt.Fprintf(b, "%8s %10s %12s | %-12s %-10s %-8s\n", bo, bs, bp, ap, as, ao)
	}
}

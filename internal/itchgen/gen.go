package itchgen

import (
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"sort"

	"github.com/marketfeed/feedhandler/feed/dayfile"
	"github.com/marketfeed/feedhandler/feed/itch"
)

// rng is wyrand: tiny, fast and deterministic.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(r.s, r.s^0xe7037ed1a0b428db)
	return hi ^ lo
}

// mix64 is splitmix64's finalizer: it turns related seeds into unrelated
// states.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// intn returns a number in [0, n) for n < 2^32.
func (r *rng) intn(n int) int { return int((r.next() >> 32) * uint64(n) >> 32) }

// uintn is intn for spans that do not fit a 32-bit int (times of day in
// ns); on 64-bit platforms it returns what uint64(intn(int(n))) did, so the
// generated days stay byte for byte the same.
func (r *rng) uintn(n uint64) uint64 { return (r.next() >> 32) * n >> 32 }

func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// event is a message scheduled at a fixed time of day (everything that is
// not order flow).
type event struct {
	ts   uint64
	typ  byte
	code byte
	sym  int32
}

const symTableBits = 17

// Generator produces one trading day of ITCH 5.0 messages in timestamp
// order. It is deterministic: the same Config yields the same messages.
type Generator struct {
	cfg Config
	rnd rng

	syms     []symbol
	symTable []int32       // quantized activity distribution: uniform index -> symbol
	mix      [1 << 12]byte // flow types without 'I', by weight
	noii     uint64        // probability (of 2^32) that a flow message in an imbalance window is an 'I'
	bk       book

	sched []event
	si    int // next scheduled event

	// order flow
	flowTotal, flowDone int
	phase               [3]struct {
		from, to uint64
		first, n int
	}
	flowTS uint64 // timestamp of the next flow message
	lastTS uint64

	nextRef   uint64
	nextMatch uint64
	emitted   int
	ipo, dlcr int32 // symbols with IPO and DLCR messages
	msg       []byte
	blk       []byte
}

// New prepares a day for cfg.
func New(cfg Config) (*Generator, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg, rnd: rng{s: cfg.Seed ^ 0x9e3779b97f4a7c15}, msg: make([]byte, 0, 64), blk: make([]byte, 0, 66)}
	g.nextRef = 1 + uint64(g.rnd.intn(4))
	g.nextMatch = 1 + uint64(g.rnd.intn(100))
	g.makeSymbols()
	g.makeMix()
	g.makeSchedule()
	g.flowTotal = cfg.Messages - len(g.sched)
	if g.flowTotal < 0 {
		return nil, fmt.Errorf("generate itch day: %d messages is fewer than the %d scheduled ones for %d symbols", cfg.Messages, len(g.sched), cfg.Symbols)
	}
	g.makePhases()
	g.flowTS = g.flowTime(0)
	return g, nil
}

// Config returns the configuration with defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

// Symbols returns the stock symbols in locate order (locate = index + 1).
func (g *Generator) Symbols() []itch.Symbol {
	out := make([]itch.Symbol, len(g.syms))
	for i := range g.syms {
		out[i] = g.syms[i].stock
	}
	return out
}

// Scheduled returns the number of scheduled (non order flow) messages.
func (g *Generator) Scheduled() int { return len(g.sched) }

// Emitted returns the number of messages returned by Next so far.
func (g *Generator) Emitted() int { return g.emitted }

// Live returns the number of orders resting in the generator's books.
func (g *Generator) Live() int { return len(g.bk.orders) - len(g.bk.free) }

func (g *Generator) makeSymbols() {
	n := g.cfg.Symbols
	seen := make(map[itch.Symbol]bool, n)
	names := make([]itch.Symbol, 0, n)
	for len(names) < n {
		l := 1 + g.rnd.intn(5)
		if l < 3 && g.rnd.intn(4) != 0 {
			l += 2 // mostly 3-5 letters
		}
		var s itch.Symbol
		for i := range s {
			s[i] = ' '
		}
		for i := 0; i < l; i++ {
			s[i] = byte('A' + g.rnd.intn(26))
		}
		if !seen[s] {
			seen[s] = true
			names = append(names, s)
		}
	}
	// Locates follow the alphabet, as in Nasdaq's directory.
	slices.SortFunc(names, func(a, b itch.Symbol) int { return slices.Compare(a[:], b[:]) })
	g.syms = make([]symbol, n)
	// Activity: Zipf-like (weight 1/rank), ranks shuffled over the alphabet.
	rank := make([]int, n)
	for i := range rank {
		rank[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := g.rnd.intn(i + 1)
		rank[i], rank[j] = rank[j], rank[i]
	}
	total := 0.0
	for i := range g.syms {
		s := &g.syms[i]
		s.stock = names[i]
		s.locate = uint16(i + 1)
		dollars := math.Exp(math.Log(8) + g.rnd.float()*(math.Log(400)-math.Log(8)))
		s.fair = window / 2
		s.base = uint32(dollars*100)*100 - uint32(s.fair)*100
		s.bestBid, s.bestAsk = none, window
		s.weight = 1 / float64(rank[i]+1)
		total += s.weight
	}
	g.symTable = make([]int32, 1<<symTableBits)
	acc := 0.0
	j := 0
	for i := range g.syms {
		acc += g.syms[i].weight / total
		for j < len(g.symTable) && float64(j)+0.5 < acc*float64(len(g.symTable)) {
			g.symTable[j] = int32(i)
			j++
		}
	}
	for ; j < len(g.symTable); j++ {
		g.symTable[j] = int32(n - 1)
	}
}

func (g *Generator) makeMix() {
	total := 0
	for _, m := range Mix {
		if m.Type != 'I' {
			total += m.Weight
		}
	}
	j, acc := 0, 0
	for _, m := range Mix {
		if m.Type == 'I' {
			continue
		}
		acc += m.Weight
		for j < len(g.mix) && (j*total+total/2)/len(g.mix) < acc {
			g.mix[j] = m.Type
			j++
		}
	}
	for ; j < len(g.mix); j++ {
		g.mix[j] = 'A'
	}
}

// makeSchedule lays out every message that is not order flow.
func (g *Generator) makeSchedule() {
	n := int32(len(g.syms))
	r := &g.rnd
	add := func(ts uint64, typ, code byte, sym int32) { g.sched = append(g.sched, event{ts, typ, code, sym}) }
	active := func() int32 { return g.symTable[r.intn(len(g.symTable))] }

	// Start of day: directory, trading state, Reg SHO, positions, MWCB levels.
	ts := StartMessages
	add(ts, 'S', 'O', -1)
	g.ipo = int32(r.intn(int(n)))
	g.dlcr = int32(r.intn(int(n)))
	for i := range n {
		ts += 1000
		add(ts, 'R', 0, i)
	}
	for i := range n {
		ts += 500
		add(ts, 'H', 'T', i)
		if r.intn(20) == 0 {
			add(ts, 'Y', '0', i)
		}
		for k := r.intn(8) - 5; k > 0; k-- {
			ts += 200
			add(ts, 'L', 0, i)
		}
	}
	ts += 1000
	add(ts, 'V', 0, -1)
	add(ts+1000, 'K', 'A', g.ipo)
	add(ts+2000, 'S', 'S', -1)
	if ts+2000 >= preMarketFrom-1_000_000 {
		panic("generate itch day: directory runs past the order flow")
	}
	// Intraday: Reg SHO triggers, RPII, halts and resumes with LULD collars,
	// an operational halt, DLCR price discovery, broken trades, one MWCB
	// status.
	for k := max(1, int(n)/100); k > 0; k-- {
		add(MarketOpen+r.uintn(6*Hour), 'Y', '1', active())
	}
	for k := max(2, int(n)/50); k > 0; k-- {
		add(StartSystem+r.uintn(15*Hour), 'N', 0, active())
	}
	halts := max(1, int(n)/200)
	for k := 0; k < halts; k++ {
		sym := active()
		at := MarketOpen + Hour/2 + r.uintn(5*Hour)
		add(at, 'H', 'P', sym)
		add(at+5*60e9-1000, 'J', 0, sym)
		add(at+5*60e9, 'H', 'T', sym)
		add(at+5*60e9+1000, 'Q', 'H', sym)
	}
	hs := active()
	add(13*Hour, 'h', 'H', hs)
	add(13*Hour+2*60e9, 'h', 'T', hs)
	add(11*Hour, 'O', 0, g.dlcr)
	add(11*Hour+60e9, 'O', 0, g.dlcr)
	add(11*Hour+30*60e9, 'K', 'A', g.ipo)
	for k := max(3, int(n)/300); k > 0; k-- {
		add(MarketOpen+Hour+r.uintn(5*Hour), 'B', 0, active())
	}
	add(14*Hour+r.uintn(Hour), 'W', '1', -1)
	// Opening and closing crosses.
	add(MarketOpen, 'S', 'Q', -1)
	for i := range n {
		add(MarketOpen+uint64(i+1)*200, 'Q', 'O', i)
	}
	add(MarketClose, 'S', 'M', -1)
	for i := range n {
		add(MarketClose+uint64(i+1)*200, 'Q', 'C', i)
	}
	add(EndSystem, 'S', 'E', -1)
	add(EndMessages, 'S', 'C', -1)
	sort.SliceStable(g.sched, func(i, j int) bool { return g.sched[i].ts < g.sched[j].ts })
}

// makePhases splits the order flow: 3% pre-market, 94% regular hours, 3%
// after hours.
func (g *Generator) makePhases() {
	pre := g.flowTotal * 3 / 100
	post := g.flowTotal * 3 / 100
	reg := g.flowTotal - pre - post
	g.phase[0] = struct {
		from, to uint64
		first, n int
	}{preMarketFrom, MarketOpen, 0, pre}
	g.phase[1].from, g.phase[1].to, g.phase[1].first, g.phase[1].n = MarketOpen+uint64(len(g.syms)+1)*200+1000, MarketClose, pre, reg
	g.phase[2].from, g.phase[2].to, g.phase[2].first, g.phase[2].n = MarketClose+uint64(len(g.syms)+1)*200+1000, EndSystem, pre+reg, post
	// NOII messages are disseminated in the imbalance windows before the
	// crosses: make 'I' that share of the flow there which gives its
	// share of the day.
	inWindow := float64(pre)*float64(noiiOpen[1]-noiiOpen[0])/float64(g.phase[0].to-g.phase[0].from) +
		float64(reg)*float64(noiiClose[1]-noiiClose[0])/float64(g.phase[1].to-g.phase[1].from)
	share := 0.0
	for _, m := range Mix {
		if m.Type == 'I' {
			share = float64(m.Weight) / 100_000
		}
	}
	if inWindow > 0 {
		g.noii = uint64(min(0.95, share*float64(g.flowTotal)/inWindow) * (1 << 32))
	}
}

// flowTime returns the timestamp of the k-th flow message. Messages come in
// bursts (on average 8 messages, 50 ns to 2 µs apart, as when one event
// triggers many order updates); a burst starts at the k-th of the slots that
// spread the phase's messages evenly over its hours.
func (g *Generator) flowTime(k int) uint64 {
	p := &g.phase[0]
	if k >= g.phase[2].first {
		p = &g.phase[2]
	} else if k >= g.phase[1].first {
		p = &g.phase[1]
	}
	r := g.rnd.next()
	if k > p.first && r&7 != 0 {
		if ts := g.lastTS + 50 + (r>>8)%1950; ts < p.to {
			return ts
		}
	}
	if p.n == 0 {
		return max(p.from, g.lastTS)
	}
	step := (p.to - p.from) / uint64(p.n)
	ts := p.from + uint64(k-p.first)*step
	return max(ts, g.lastTS)
}

// Next returns the next message of the day, a view valid until the next
// call, or false after the last one.
func (g *Generator) Next() (itch.Msg, bool) {
	switch {
	case g.si < len(g.sched) && (g.flowDone == g.flowTotal || g.sched[g.si].ts <= g.flowTS):
		e := &g.sched[g.si]
		g.si++
		g.lastTS = max(g.lastTS, e.ts)
		g.scheduled(e)
	case g.flowDone < g.flowTotal:
		g.lastTS = g.flowTS
		g.flow()
		g.flowDone++
		if g.flowDone < g.flowTotal {
			g.flowTS = g.flowTime(g.flowDone)
		}
	default:
		return nil, false
	}
	g.emitted++
	return itch.Msg(g.msg), true
}

// Write writes the whole remaining day to w as a BinaryFILE.
func (g *Generator) Write(w io.Writer) error {
	dw := dayfile.NewWriter(w)
	for m, ok := g.Next(); ok; m, ok = g.Next() {
		if err := dw.WriteMessage(m); err != nil {
			return fmt.Errorf("generate itch day: %w", err)
		}
	}
	if err := dw.Flush(); err != nil {
		return fmt.Errorf("generate itch day: %w", err)
	}
	return nil
}

// Stream calls fn with every remaining message of the day (a view valid
// during the call) and stops at the first error.
func (g *Generator) Stream(fn func(itch.Msg) error) error {
	for m, ok := g.Next(); ok; m, ok = g.Next() {
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

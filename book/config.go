package book

import (
	"errors"
	"fmt"
	"math/bits"
	"unsafe"
)

// Config sizes a Books. All order storage is allocated once by New;
// running out of a capacity is counted in Stats and reported by Books.Err,
// never a crash.
type Config struct {
	// MaxOrders is the number of live orders the Books can hold at once.
	MaxOrders int
	// MaxLocates is the highest stock locate accepted (1..65535). Messages
	// for a locate above it are counted as LocateCapacity.
	MaxLocates int
	// MaxLevels is the number of live price levels (all instruments, both
	// sides) the Books may hold at once.
	MaxLevels int
	// RefTableSize is the number of home slots of the order table: the
	// order with reference r lives in slot r modulo RefTableSize when that
	// slot is free (32 bytes each); it is rounded up to a power of two.
	// 0 means 2*MaxOrders rounded up.
	RefTableSize int
	// Overflow is the number of extra order slots for orders whose home
	// slot is held by an older live order (one still resting RefTableSize
	// references later, or sparse references), found through a hash table.
	// 0 means MaxOrders/4.
	Overflow int
	// TradeMemory is how many trades are remembered by match number, so
	// that a Broken Trade (B) can take its shares off the volume and undo
	// it as the last trade: the trade with match number m is kept in slot
	// m modulo TradeMemory until a later one takes the slot (match numbers
	// are dense and increasing through the day, so these are about the
	// last TradeMemory trades). 32 bytes each; rounded up to a power of
	// two; 0 means MaxOrders/4 (at least 1024): 1 Mi trades, 32 MiB, by
	// default.
	TradeMemory int
}

// DefaultConfig fits a busy Nasdaq day: 4 Mi live orders, every locate,
// 1 Mi live levels, 1 Mi trades remembered. The order storage takes about
// 300 MiB, the trade memory 32 MiB.
func DefaultConfig() Config {
	return Config{MaxOrders: 1 << 22, MaxLocates: 65535, MaxLevels: 1 << 20}
}

// Errors returned by New and, wrapped, by Books.Err.
var (
	ErrConfig         = errors.New("invalid book config")
	ErrOrderCapacity  = errors.New("order capacity exhausted")
	ErrLevelCapacity  = errors.New("price level capacity exhausted")
	ErrLocateCapacity = errors.New("locate above configured maximum")
)

// MaxOrdersLimit is the largest Config.MaxOrders New accepts.
const MaxOrdersLimit = 1<<29 - 1

// Bytes is the memory New allocates (and touches) for c: the order table
// and its overflow slots, the books, the trade memory, the price levels
// and their ladders, the symbols' claims. A feed handler holds one Books per shard.
func (c Config) Bytes() (int64, error) {
	c, err := c.normalize()
	if err != nil {
		return 0, err
	}
	ovfSlots := int64(1) << bits.Len(uint(2*c.Overflow-1))
	return int64(1+c.RefTableSize+c.Overflow)*int64(unsafe.Sizeof(order{})) +
		ovfSlots*8 +
		int64(c.MaxLocates+1)*int64(unsafe.Sizeof(Book{})) +
		int64(c.TradeMemory)*int64(unsafe.Sizeof(tradeRec{})) +
		int64(ladderRungs(c.MaxLevels))*int64(unsafe.Sizeof(rung{})) +
		int64(c.MaxLevels)*int64(unsafe.Sizeof(priceLevel{})) +
		int64(c.MaxLocates+1)*(8+8) + int64(holderSlots(c.MaxLocates+1))*2, nil // claims
}

func (c Config) normalize() (Config, error) {
	if c.MaxOrders <= 0 || c.MaxOrders > MaxOrdersLimit {
		return c, fmt.Errorf("new books: MaxOrders %d: %w", c.MaxOrders, ErrConfig)
	}
	if c.MaxLocates <= 0 || c.MaxLocates > 65535 {
		return c, fmt.Errorf("new books: MaxLocates %d: %w", c.MaxLocates, ErrConfig)
	}
	if c.MaxLevels <= 0 || int64(c.MaxLevels) >= 1<<31 {
		return c, fmt.Errorf("new books: MaxLevels %d: %w", c.MaxLevels, ErrConfig)
	}
	n := c.RefTableSize
	if n == 0 {
		n = 2 * c.MaxOrders
	}
	if n <= 0 || n > 1<<30 {
		return c, fmt.Errorf("new books: RefTableSize %d: %w", n, ErrConfig)
	}
	c.RefTableSize = 1 << bits.Len(uint(n-1))
	if c.Overflow == 0 {
		c.Overflow = max(c.MaxOrders/4, 16)
	}
	if c.Overflow < 0 || c.Overflow > 1<<29 {
		return c, fmt.Errorf("new books: Overflow %d: %w", c.Overflow, ErrConfig)
	}
	t := c.TradeMemory
	if t == 0 {
		t = max(c.MaxOrders/4, 1024)
	}
	if t <= 0 || t > 1<<28 {
		return c, fmt.Errorf("new books: TradeMemory %d: %w", t, ErrConfig)
	}
	c.TradeMemory = 1 << bits.Len(uint(t-1))
	return c, nil
}

// Stats counts what a Books applied and every inconsistency it met in its
// input. Inconsistent messages are ignored (or, for over-executions and
// over-cancels, remove the whole order) so the books stay consistent.
// Orders, Levels, Incomplete and Overflowed describe the books now; every other field
// counts since New (Reset keeps them), so exported counters never go back.
type Stats struct {
	Messages uint64 // messages given to Apply
	Orders   uint64 // live orders now
	Levels   uint64 // live price levels now
	// Incomplete: books now missing an order dropped for want of capacity
	// (Book.Incomplete).
	Incomplete uint64

	Malformed   uint64 // message shorter than its type's length, or empty; a Stock Directory for locate 0
	Long        uint64 // message longer than its type's length (applied; the extra bytes ignored)
	UnknownType uint64 // type byte not in ITCH 5.0 (skipped)

	UnknownLocate  uint64 // message for a locate never announced by 'R'
	LocateCapacity uint64 // locate above Config.MaxLocates
	// LocateReassigned counts Stock Directory messages (R) for a known
	// locate under another symbol; its book was emptied (Announce).
	LocateReassigned uint64
	// DuplicateSymbol counts Stock Directory messages (R) giving a locate
	// a symbol that another locate holds in the session (Book.Duplicate):
	// the first locate keeps it. Not in Inconsistencies: its own counter
	// and alert (the handler's duplicate symbols), the book applied as any.
	DuplicateSymbol uint64

	DuplicateAdd      uint64 // A/F/U adding a reference that is live (a U's own original's too: applied)
	UnknownRefExecute uint64 // E/C of an unknown order reference
	UnknownRefCancel  uint64 // X of an unknown order reference
	UnknownRefDelete  uint64 // D of an unknown order reference
	UnknownRefReplace uint64 // U of an unknown original order reference
	OverExecution     uint64 // E/C of more shares than the order has (order removed)
	OverCancel        uint64 // X of more shares than the order has (order removed)
	BadSide           uint64 // add with a side other than 'B'/'S'
	ZeroShares        uint64 // add/replace with 0 shares, execute/cancel of 0 shares, a Trade (P) of 0 shares
	// BadState counts Stock Trading Action (H), Reg SHO (Y),
	// Operational Halt (h) and System Event (S) messages whose trading
	// state, action, market code or event code is none of the values
	// ITCH 5.0 defines: ignored, the instrument's state (the market's
	// last event) kept (a halted stock stays halted). Also Order Executed
	// With Price (C) messages applied with a printable flag neither 'Y'
	// nor 'N': the shares leave the order, the execution is taken as
	// non-printable (not in the last trade and volume).
	BadState uint64

	OrderCapacity uint64 // add dropped: Config.MaxOrders live orders, or every overflow slot taken
	Overflowed    uint64 // live orders now in overflow slots (not an inconsistency)
	LevelCapacity uint64 // add dropped: Config.MaxLevels live levels

	// LadderMismatch counts emptied price levels that their side's ladder
	// did not hold under their price: a broken internal invariant, never
	// seen. The level is freed all the same (Levels drops, the pool does
	// not leak), and the rung that referred to it, if any, is taken out.
	// Until then such a level's price may differ between Book.Top (the
	// level's key: shm) and Best, Depth and AppendDepth (the rung's).
	LadderMismatch uint64

	// BrokenUnmatched counts Broken Trades (B) whose match number names no
	// trade remembered for the instrument: older than Config.TradeMemory
	// trades, never seen, of another instrument, or broken already. Such a
	// B changes only the broken count. It is not in Inconsistencies: with
	// a bounded memory a B of an old trade cannot be told from a bad one.
	BrokenUnmatched uint64

	// DuplicateMatch counts Broken Trades (B) of a match number that two
	// printed trades of the instrument carried (ITCH 5.0 makes match
	// numbers unique in a day: bad input, or a trade applied twice). The
	// trade memory keeps the later print: the B takes its shares off the
	// volume, and the earlier one, standing but no longer remembered,
	// leaves the last trade unknown (0@0) when the two came in a row and
	// the later was the last. Seen at the B only, in the chain of the
	// instrument's previous trades (at most 64 back, while remembered):
	// the per-trade path does not look, so a duplicate never broken is not
	// counted.
	DuplicateMatch uint64
}

// Inconsistencies is the sum of every counter that flags bad input, an
// exhausted capacity or a broken invariant of the books. UnknownType is
// not in it: a type byte ITCH 5.0 does not define is skipped by its
// length, as the protocol's extensions are meant to be, and is counted
// apart.
func (s Stats) Inconsistencies() uint64 {
	return s.Malformed + s.Long + s.UnknownLocate + s.LocateCapacity + s.LocateReassigned +
		s.DuplicateAdd + s.UnknownRefExecute + s.UnknownRefCancel + s.UnknownRefDelete +
		s.UnknownRefReplace + s.OverExecution + s.OverCancel + s.BadSide + s.ZeroShares +
		s.OrderCapacity + s.LevelCapacity + s.LadderMismatch + s.DuplicateMatch + s.BadState
}

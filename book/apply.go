package book

import (
	"github.com/marketfeed/feedhandler/feed/itch"
)

// Symbol returns the instrument's symbol as announced (space padded).
func (b *Book) Symbol() itch.Symbol { return itch.Symbol(b.symbol) }

func sideOf(indicator byte) Side {
	switch indicator {
	case 'B':
		return Bid
	case 'S':
		return Ask
	}
	return 2 // counted as BadSide by add
}

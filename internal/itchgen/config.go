package itchgen

import (
	"fmt"
	"net/netip"
	"time"
)

// Config describes the day to generate. The zero value of every field but
// Messages picks a default.
type Config struct {
	Messages int    // total messages in the day, system events and directory included
	Symbols  int    // listed symbols (default 500)
	Seed     uint64 // same seed and config, same bytes

	// Output as MoldUDP64 packets (WritePcap).
	Session   string         // MoldUDP64 session name (default "GEN0000001")
	Group     netip.AddrPort // line A multicast group and port (default 233.54.12.111:26477)
	GroupB    netip.AddrPort // line B group and port (default: group address + 1, same port)
	Source    netip.AddrPort // sender address (default 10.0.0.1:50000)
	Lines     int            // 1 (default) or 2: write both A and B copies of every packet
	MaxPacket int            // largest UDP payload, header included (default 1400)
	Date      time.Time      // trading day; pcap times are Date's midnight in New York plus the ITCH timestamp (default 2026-11-24)

	// Fault injection into the pcap, per line and packet, for tests of
	// receivers: probability of dropping, duplicating, or delaying a packet
	// by 200 µs (packets sent meanwhile overtake it). Lines draw
	// independently.
	Loss, Dup, Reorder float64
}

func (c *Config) setDefaults() error {
	if c.Messages <= 0 {
		return fmt.Errorf("generate itch day: message count %d must be positive", c.Messages)
	}
	if c.Symbols == 0 {
		c.Symbols = 500
	}
	if c.Symbols < 1 || c.Symbols > 60000 {
		return fmt.Errorf("generate itch day: %d symbols outside 1..60000", c.Symbols)
	}
	if c.Session == "" {
		c.Session = "GEN0000001"
	}
	if len(c.Session) > 10 {
		return fmt.Errorf("generate itch day: session %q longer than 10 characters", c.Session)
	}
	if !c.Group.IsValid() {
		c.Group = netip.MustParseAddrPort("233.54.12.111:26477")
	}
	if !c.Group.Addr().Is4() {
		return fmt.Errorf("generate itch day: group %v is not IPv4", c.Group)
	}
	if !c.GroupB.IsValid() {
		c.GroupB = netip.AddrPortFrom(c.Group.Addr().Next(), c.Group.Port())
	}
	if !c.Source.IsValid() {
		c.Source = netip.MustParseAddrPort("10.0.0.1:50000")
	}
	// The pcap holds IPv4 frames only (pcap.AppendUDPFrame panics on
	// another address).
	for _, a := range []struct {
		what string
		ap   netip.AddrPort
	}{{"group B", c.GroupB}, {"source", c.Source}} {
		if !a.ap.Addr().Is4() {
			return fmt.Errorf("generate itch day: %s %v is not IPv4", a.what, a.ap)
		}
	}
	if c.Lines == 0 {
		c.Lines = 1
	}
	if c.Lines != 1 && c.Lines != 2 {
		return fmt.Errorf("generate itch day: %d lines, want 1 or 2", c.Lines)
	}
	if c.MaxPacket == 0 {
		c.MaxPacket = 1400
	}
	if c.MaxPacket < 20+2+50 || c.MaxPacket > 65000 {
		return fmt.Errorf("generate itch day: packet size %d outside 72..65000", c.MaxPacket)
	}
	if c.Date.IsZero() {
		c.Date = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	}
	for _, p := range []float64{c.Loss, c.Dup, c.Reorder} {
		if !(p >= 0 && p < 1) { // NaN too, which injected nothing
			return fmt.Errorf("generate itch day: fault probability %v outside [0, 1)", p)
		}
	}
	return nil
}

// Times of the day, ns since midnight (Eastern time, as ITCH timestamps).
const (
	Hour          = uint64(time.Hour)
	StartMessages = 4 * Hour           // 'O'
	StartSystem   = 4*Hour + 1_000_000 // about when 'S' follows the directory
	MarketOpen    = 9*Hour + Hour/2    // 'Q'
	MarketClose   = 16 * Hour          // 'M'
	EndSystem     = 20 * Hour          // 'E'
	EndMessages   = 20*Hour + 5*60*1e9 // 'C'
	preMarketFrom = 4*Hour + 1e9       // order flow starts after the directory
)

// Imbalance (NOII) windows before the opening and closing crosses.
var (
	noiiOpen  = [2]uint64{MarketOpen - 5*60e9, MarketOpen}
	noiiClose = [2]uint64{MarketClose - 10*60e9, MarketClose}
)

// Mix is the order-flow message mix in parts per 100,000 flow messages,
// after the real day 10302019 (A 43.3%, D 41.9%, U 8.7%, E 2.5%, I 1.3%,
// X 1.2%, P 0.5%, F 0.5%, C 0.1%). The 'I' messages all fall in the
// imbalance windows (09:25-09:30 and 15:50-16:00), where they make up the
// matching share of the flow. The remaining types are scheduled events
// (system events, directory, halts, crosses, ...).
var Mix = [...]struct {
	Type   byte
	Weight int
}{
	{'A', 43300}, {'D', 41900}, {'U', 8700}, {'E', 2500}, {'I', 1300},
	{'X', 1200}, {'P', 500}, {'F', 500}, {'C', 100},
}

//go:build ignore

// gen_messages generates tables_gen.go, views_gen.go, views_order_gen.go and fields_gen.go from the message
// table below: one view type, one XxxFields struct with Append, and one
// Fields method per ITCH 5.0 message type. Run with `go generate ./feed/itch`.
//
// The table lists the body fields of each message in wire order; offsets are
// computed from 11 (the end of the common header) and the generator fails
// when a message's fields do not add up to its published length.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"strings"
)

var outDir = flag.String("dir", ".", "directory to write the generated files to")

type field struct {
	name string
	kind string // u8 u16 u32 u64 price4 price8 sym mpid alphaN
	doc  string
}

type message struct {
	typ    byte
	name   string // view type name
	length int    // published total length, type byte included
	doc    string
	fields []field
}

func f(name, kind, doc string) field { return field{name, kind, doc} }

var messages = []message{
	{'S', "SystemEvent", 12, "System Event: start/end of messages, system and market hours.", []field{
		f("EventCode", "u8", "'O' start of messages, 'S' start of system hours, 'Q' start of market hours, 'M' end of market hours, 'E' end of system hours, 'C' end of messages"),
	}},
	{'R', "StockDirectory", 39, "Stock Directory: one per issue at the start of the day; assigns the locate.", []field{
		f("Stock", "sym", "security symbol"),
		f("MarketCategory", "u8", "listing market: 'Q' Global Select, 'G' Global, 'S' Capital, 'N' NYSE, 'A' NYSE American, 'P' NYSE Arca, 'Z' BATS, 'V' IEX, ' ' not available"),
		f("FinancialStatus", "u8", "'D' deficient, 'E' delinquent, 'Q' bankrupt, 'N' normal, ... ' ' not available"),
		f("RoundLotSize", "u32", "shares in a round lot"),
		f("RoundLotsOnly", "u8", "'Y' only round lots accepted, 'N' odd and mixed lots allowed"),
		f("IssueClassification", "u8", "issue classification code"),
		f("IssueSubType", "alpha2", "issue sub-type code"),
		f("Authenticity", "u8", "'P' live/production, 'T' test"),
		f("ShortSaleThreshold", "u8", "Reg SHO threshold: 'Y', 'N', ' ' not available"),
		f("IPOFlag", "u8", "'Y' new IPO today, 'N', ' ' not available"),
		f("LULDRefPriceTier", "u8", "'1' tier 1, '2' tier 2, ' ' not available"),
		f("ETPFlag", "u8", "'Y' exchange traded product, 'N', ' ' not available"),
		f("ETPLeverageFactor", "u32", "ETP leverage factor (integer)"),
		f("InverseIndicator", "u8", "'Y' inverse ETP, 'N'"),
	}},
	{'H', "StockTradingAction", 25, "Stock Trading Action: halt, pause, quotation-only and trading states.", []field{
		f("Stock", "sym", "security symbol"),
		f("TradingState", "u8", "'H' halted, 'P' paused, 'Q' quotation only, 'T' trading"),
		f("Reserved", "u8", "reserved byte"),
		f("Reason", "alpha4", "trading action reason code"),
	}},
	{'Y', "RegSHO", 20, "Reg SHO Short Sale Price Test Restricted Indicator.", []field{
		f("Stock", "sym", "security symbol"),
		f("Action", "u8", "'0' no price test, '1' restriction in effect (intra-day drop), '2' restriction remains in effect"),
	}},
	{'L', "MarketParticipantPosition", 26, "Market Participant Position.", []field{
		f("MPID", "mpid", "market participant identifier"),
		f("Stock", "sym", "security symbol"),
		f("PrimaryMarketMaker", "u8", "'Y' primary market maker, 'N'"),
		f("MarketMakerMode", "u8", "'N' normal, 'P' passive, 'S' syndicate, 'R' pre-syndicate, 'L' penalty"),
		f("MarketParticipantState", "u8", "'A' active, 'E' excused, 'W' withdrawn, 'S' suspended, 'D' deleted"),
	}},
	{'V', "MWCBDeclineLevel", 35, "Market-Wide Circuit Breaker decline levels (Price(8), 8 implied decimals).", []field{
		f("Level1", "price8", "level 1 decline price, Price(8)"),
		f("Level2", "price8", "level 2 decline price, Price(8)"),
		f("Level3", "price8", "level 3 decline price, Price(8)"),
	}},
	{'W', "MWCBStatus", 12, "Market-Wide Circuit Breaker breach.", []field{
		f("BreachedLevel", "u8", "'1', '2' or '3'"),
	}},
	{'K', "IPOQuotingPeriod", 28, "IPO Quoting Period Update.", []field{
		f("Stock", "sym", "security symbol"),
		f("ReleaseTime", "u32", "IPO quotation release time, seconds since midnight"),
		f("ReleaseQualifier", "u8", "'A' anticipated release time, 'C' cancelled/postponed"),
		f("IPOPrice", "price4", "IPO price, Price(4)"),
	}},
	{'J', "LULDAuctionCollar", 35, "Limit Up-Limit Down Auction Collar.", []field{
		f("Stock", "sym", "security symbol"),
		f("CollarRefPrice", "price4", "auction collar reference price, Price(4)"),
		f("UpperCollarPrice", "price4", "upper auction collar price, Price(4)"),
		f("LowerCollarPrice", "price4", "lower auction collar price, Price(4)"),
		f("CollarExtension", "u32", "number of auction collar extensions"),
	}},
	{'h', "OperationalHalt", 21, "Operational Halt.", []field{
		f("Stock", "sym", "security symbol"),
		f("MarketCode", "u8", "'Q' Nasdaq, 'B' BX, 'X' PSX"),
		f("HaltAction", "u8", "'H' operationally halted, 'T' operational halt lifted"),
	}},
	{'A', "AddOrder", 36, "Add Order without attribution.", []field{
		f("OrderRef", "u64", "order reference number, unique for the day"),
		f("Side", "u8", "'B' buy, 'S' sell"),
		f("Shares", "u32", "displayed shares"),
		f("Stock", "sym", "security symbol"),
		f("Price", "price4", "limit price, Price(4)"),
	}},
	{'F', "AddOrderMPID", 40, "Add Order with MPID attribution.", []field{
		f("OrderRef", "u64", "order reference number, unique for the day"),
		f("Side", "u8", "'B' buy, 'S' sell"),
		f("Shares", "u32", "displayed shares"),
		f("Stock", "sym", "security symbol"),
		f("Price", "price4", "limit price, Price(4)"),
		f("Attribution", "mpid", "market participant identifier"),
	}},
	{'E', "OrderExecuted", 31, "Order Executed at the order's price.", []field{
		f("OrderRef", "u64", "order reference number"),
		f("ExecutedShares", "u32", "shares executed"),
		f("MatchNumber", "u64", "match number"),
	}},
	{'C', "OrderExecutedWithPrice", 36, "Order Executed at a price different from the order's.", []field{
		f("OrderRef", "u64", "order reference number"),
		f("ExecutedShares", "u32", "shares executed"),
		f("MatchNumber", "u64", "match number"),
		f("Printable", "u8", "'Y' printable, 'N' non-printable"),
		f("ExecutionPrice", "price4", "execution price, Price(4)"),
	}},
	{'X', "OrderCancel", 23, "Order Cancel (partial).", []field{
		f("OrderRef", "u64", "order reference number"),
		f("CancelledShares", "u32", "shares removed from the order"),
	}},
	{'D', "OrderDelete", 19, "Order Delete.", []field{
		f("OrderRef", "u64", "order reference number"),
	}},
	{'U', "OrderReplace", 35, "Order Replace: removes the original, adds the new order with the same side and stock.", []field{
		f("OriginalOrderRef", "u64", "order reference number of the replaced order"),
		f("NewOrderRef", "u64", "order reference number of the new order"),
		f("Shares", "u32", "displayed shares of the new order"),
		f("Price", "price4", "price of the new order, Price(4)"),
	}},
	{'P', "Trade", 44, "Trade (non-cross) against a non-displayed order.", []field{
		f("OrderRef", "u64", "order reference number (0 since 2019)"),
		f("Side", "u8", "'B' buy, 'S' sell"),
		f("Shares", "u32", "shares"),
		f("Stock", "sym", "security symbol"),
		f("Price", "price4", "price, Price(4)"),
		f("MatchNumber", "u64", "match number"),
	}},
	{'Q', "CrossTrade", 40, "Cross Trade.", []field{
		f("Shares", "u64", "shares matched in the cross"),
		f("Stock", "sym", "security symbol"),
		f("CrossPrice", "price4", "cross price, Price(4)"),
		f("MatchNumber", "u64", "match number"),
		f("CrossType", "u8", "'O' opening, 'C' closing, 'H' IPO/halt, 'I' intraday"),
	}},
	{'B', "BrokenTrade", 19, "Broken Trade.", []field{
		f("MatchNumber", "u64", "match number of the broken trade"),
	}},
	{'I', "NOII", 50, "Net Order Imbalance Indicator.", []field{
		f("PairedShares", "u64", "shares paired at the current reference price"),
		f("ImbalanceShares", "u64", "shares not paired"),
		f("ImbalanceDirection", "u8", "'B' buy, 'S' sell, 'N' none, 'O' insufficient orders"),
		f("Stock", "sym", "security symbol"),
		f("FarPrice", "price4", "far price, Price(4)"),
		f("NearPrice", "price4", "near price, Price(4)"),
		f("CurrentRefPrice", "price4", "current reference price, Price(4)"),
		f("CrossType", "u8", "'O' opening, 'C' closing, 'H' IPO/halt, 'A' extended trading close"),
		f("PriceVariation", "u8", "price variation indicator: 'L' <1%, '1'..'9', 'A' 10-19.99%, 'B' 20-29.99%, 'C' >=30%, ' ' not available"),
	}},
	{'N', "RPII", 20, "Retail Price Improvement Indicator.", []field{
		f("Stock", "sym", "security symbol"),
		f("InterestFlag", "u8", "'B' buy side, 'S' sell side, 'A' both, 'N' none"),
	}},
	{'O', "DLCR", 48, "Direct Listing with Capital Raise price discovery.", []field{
		f("Stock", "sym", "security symbol"),
		f("OpenEligibility", "u8", "open eligibility status: 'N' not eligible, 'Y' eligible"),
		f("MinAllowedPrice", "price4", "minimum allowable price, Price(4)"),
		f("MaxAllowedPrice", "price4", "maximum allowable price, Price(4)"),
		f("NearExecPrice", "price4", "near execution price, Price(4)"),
		f("NearExecTime", "u64", "near execution time, ns since midnight"),
		f("LowerPriceRangeCollar", "price4", "lower price range collar, Price(4)"),
		f("UpperPriceRangeCollar", "price4", "upper price range collar, Price(4)"),
	}},
}

var typeConst = map[string]string{
	"SystemEvent": "TypeSystemEvent", "StockDirectory": "TypeStockDirectory",
	"StockTradingAction": "TypeStockTradingAction", "RegSHO": "TypeRegSHO",
	"MarketParticipantPosition": "TypeMarketParticipantPosition", "MWCBDeclineLevel": "TypeMWCBDeclineLevel",
	"MWCBStatus": "TypeMWCBStatus", "IPOQuotingPeriod": "TypeIPOQuotingPeriod",
	"LULDAuctionCollar": "TypeLULDAuctionCollar", "OperationalHalt": "TypeOperationalHalt",
	"AddOrder": "TypeAddOrder", "AddOrderMPID": "TypeAddOrderMPID", "OrderExecuted": "TypeOrderExecuted",
	"OrderExecutedWithPrice": "TypeOrderExecutedWithPrice", "OrderCancel": "TypeOrderCancel",
	"OrderDelete": "TypeOrderDelete", "OrderReplace": "TypeOrderReplace", "Trade": "TypeTrade",
	"CrossTrade": "TypeCrossTrade", "BrokenTrade": "TypeBrokenTrade", "NOII": "TypeNOII",
	"RPII": "TypeRPII", "DLCR": "TypeDLCR",
}

func size(kind string) int {
	switch kind {
	case "u8":
		return 1
	case "u16":
		return 2
	case "u32", "price4", "mpid", "alpha4":
		return 4
	case "u64", "price8", "sym":
		return 8
	case "alpha2":
		return 2
	}
	panic("unknown kind " + kind)
}

func goType(kind string) string {
	switch kind {
	case "u8":
		return "byte"
	case "u16":
		return "uint16"
	case "u32", "price4":
		return "uint32"
	case "u64", "price8":
		return "uint64"
	case "sym":
		return "Symbol"
	case "mpid":
		return "MPID"
	case "alpha2":
		return "[2]byte"
	case "alpha4":
		return "[4]byte"
	}
	panic("unknown kind " + kind)
}

func getter(kind string, off int) string {
	switch kind {
	case "u8":
		return fmt.Sprintf("m[%d]", off)
	case "u16":
		return fmt.Sprintf("binary.BigEndian.Uint16(m[%d:])", off)
	case "u32", "price4":
		return fmt.Sprintf("binary.BigEndian.Uint32(m[%d:])", off)
	case "u64", "price8":
		return fmt.Sprintf("binary.BigEndian.Uint64(m[%d:])", off)
	default:
		return fmt.Sprintf("%s(m[%d:%d])", goType(kind), off, off+size(kind))
	}
}

func putter(kind, name string, off int) string {
	switch kind {
	case "u8":
		return fmt.Sprintf("b[%d] = f.%s", off, name)
	case "u16":
		return fmt.Sprintf("binary.BigEndian.PutUint16(b[%d:], f.%s)", off, name)
	case "u32", "price4":
		return fmt.Sprintf("binary.BigEndian.PutUint32(b[%d:], f.%s)", off, name)
	case "u64", "price8":
		return fmt.Sprintf("binary.BigEndian.PutUint64(b[%d:], f.%s)", off, name)
	default:
		return fmt.Sprintf("copy(b[%d:%d], f.%s[:])", off, off+size(kind), name)
	}
}

const header = "// Code generated by gen_messages.go; DO NOT EDIT.\n\npackage itch\n\n"

func main() {
	flag.Parse()
	var views, tables, fields bytes.Buffer
	views.WriteString(header)
	views.WriteString("import \"encoding/binary\"\n\n")
	var orderViews bytes.Buffer
	orderViews.WriteString(header)
	orderViews.WriteString("import \"encoding/binary\"\n\n")
	tables.WriteString(header)
	fields.WriteString(header)
	fields.WriteString("import \"encoding/binary\"\n\n")

	// Lengths.
	tables.WriteString("// Total lengths (type byte included) of every message type.\nconst (\n")
	for _, m := range messages {
		fmt.Fprintf(&tables, "\t%sLen = %d\n", m.name, m.length)
	}
	tables.WriteString(")\n\n")
	tables.WriteString("var lengths = [256]uint8{\n")
	for _, m := range messages {
		fmt.Fprintf(&tables, "\t%s: %sLen,\n", typeConst[m.name], m.name)
	}
	tables.WriteString("}\n\n")
	tables.WriteString("var names = [256]string{\n")
	for _, m := range messages {
		fmt.Fprintf(&tables, "\t%s: %q,\n", typeConst[m.name], m.name)
	}
	tables.WriteString("}\n\n")

	for _, m := range messages {
		tc := typeConst[m.name]
		if tc == "" {
			panic("no type const for " + m.name)
		}
		off := 11
		offs := make([]int, len(m.fields))
		for i, fl := range m.fields {
			offs[i] = off
			off += size(fl.kind)
		}
		if off != m.length {
			panic(fmt.Sprintf("%c %s: fields end at %d, published length %d", m.typ, m.name, off, m.length))
		}

		// View: system and stock-state messages in one file, order flow in another.
		views := &views
		if m.typ == 'A' || m.typ == 'F' || m.typ == 'E' || m.typ == 'C' || m.typ == 'X' ||
			m.typ == 'D' || m.typ == 'U' || m.typ == 'P' || m.typ == 'Q' || m.typ == 'B' {
			views = &orderViews
		}
		fmt.Fprintf(views, "// %s is a zero-copy view of a message of type '%c': %s\n", m.name, m.typ, m.doc)
		fmt.Fprintf(views, "// Convert a Msg only after Check (or a Scanner) has verified its type and\n// that it holds at least %sLen bytes.\n", m.name)
		fmt.Fprintf(views, "type %s []byte\n\n", m.name)
		fmt.Fprintf(views, "// Type returns the message type byte ('%c').\nfunc (m %s) Type() byte { return m[0] }\n\n", m.typ, m.name)
		fmt.Fprintf(views, "// Locate returns the stock locate.\nfunc (m %s) Locate() uint16 { return binary.BigEndian.Uint16(m[1:]) }\n\n", m.name)
		fmt.Fprintf(views, "// Tracking returns the tracking number.\nfunc (m %s) Tracking() uint16 { return binary.BigEndian.Uint16(m[3:]) }\n\n", m.name)
		fmt.Fprintf(views, "// Timestamp returns nanoseconds since midnight.\nfunc (m %s) Timestamp() uint64 { return uint48(m[5:]) }\n\n", m.name)
		fmt.Fprintf(views, "// Header returns the common header fields.\nfunc (m %s) Header() Header { return Msg(m).Header() }\n\n", m.name)
		for i, fl := range m.fields {
			unit := "bytes"
			if size(fl.kind) == 1 {
				unit = "byte"
			}
			fmt.Fprintf(views, "// %s returns the field at offset %d (%d %s): %s.\n", fl.name, offs[i], size(fl.kind), unit, fl.doc)
			fmt.Fprintf(views, "func (m %s) %s() %s { return %s }\n\n", m.name, fl.name, goType(fl.kind), getter(fl.kind, offs[i]))
		}
		fmt.Fprintf(views, "// Fields decodes every field of the message.\nfunc (m %s) Fields() %sFields {\n", m.name, m.name)
		fmt.Fprintf(views, "\treturn %sFields{\n\t\tHeader: m.Header(),\n", m.name)
		for i, fl := range m.fields {
			fmt.Fprintf(views, "\t\t%s: %s,\n", fl.name, getter(fl.kind, offs[i]))
		}
		views.WriteString("\t}\n}\n\n")

		// Fields struct and encoder.
		fmt.Fprintf(&fields, "// %sFields holds every field of a message of type '%c' (%s) for encoding.\n", m.name, m.typ, strings.TrimSuffix(m.doc, "."))
		fmt.Fprintf(&fields, "type %sFields struct {\n\tHeader\n", m.name)
		for _, fl := range m.fields {
			fmt.Fprintf(&fields, "\t%s %s // %s\n", fl.name, goType(fl.kind), fl.doc)
		}
		fields.WriteString("}\n\n")
		fmt.Fprintf(&fields, "// Type returns %s.\nfunc (f *%sFields) Type() byte { return %s }\n\n", tc, m.name, tc)
		fmt.Fprintf(&fields, "// Append appends the %d-byte message (no length prefix) to dst.\n", m.length)
		fmt.Fprintf(&fields, "func (f *%sFields) Append(dst []byte) []byte {\n", m.name)
		fmt.Fprintf(&fields, "\tdst, b := extend(dst, %sLen)\n\tputHeader(b, %s, &f.Header)\n", m.name, tc)
		for i, fl := range m.fields {
			fmt.Fprintf(&fields, "\t%s\n", putter(fl.kind, fl.name, offs[i]))
		}
		fields.WriteString("\treturn dst\n}\n\n")
		fmt.Fprintf(&fields, "// AppendBlock appends the message framed as a block: u16 length %d, then the message.\n", m.length)
		fmt.Fprintf(&fields, "func (f *%sFields) AppendBlock(dst []byte) []byte {\n\treturn f.Append(append(dst, 0, %sLen))\n}\n\n", m.name, m.name)
	}

	tables.WriteString("// Decode decodes every field of m into a new XxxFields struct of its type and\n")
	tables.WriteString("// returns a pointer to it, or false for an unknown type or a message shorter\n")
	tables.WriteString("// than its type's length. It allocates: use it for tools and tests, and the\n")
	tables.WriteString("// views on hot paths.\n")
	tables.WriteString("func Decode(m Msg) (Encoder, bool) {\n\tif len(m) == 0 || len(m) < Length(m[0]) || !Known(m[0]) {\n\t\treturn nil, false\n\t}\n\tswitch m[0] {\n")
	for _, m := range messages {
		fmt.Fprintf(&tables, "\tcase %s:\n\t\tf := %s(m).Fields()\n\t\treturn &f, true\n", typeConst[m.name], m.name)
	}
	tables.WriteString("\t}\n\treturn nil, false\n}\n")

	write := func(name string, buf *bytes.Buffer) {
		name = filepath.Join(*outDir, name)
		src, err := format.Source(buf.Bytes())
		if err != nil {
			os.WriteFile(name, buf.Bytes(), 0o644)
			panic(fmt.Sprintf("format %s: %v", name, err))
		}
		if err := os.WriteFile(name, src, 0o644); err != nil {
			panic(err)
		}
	}
	write("tables_gen.go", &tables)
	write("views_gen.go", &views)
	write("views_order_gen.go", &orderViews)
	write("fields_gen.go", &fields)
}

package itch_test

import "github.com/marketfeed/feedhandler/feed/itch"

// vectors is the one table of test vectors: one message of every type, with
// field values chosen so that every byte differs from its neighbours (a field
// read at a wrong offset or with a wrong width gives a different value).
// Round-trip, allocation, fuzz-seed and benchmark code all use it.
var vectors = []itch.Encoder{
	&itch.SystemEventFields{Header: hdr(0, 0x0102, 3600_000_000_123), EventCode: 'Q'},
	&itch.StockDirectoryFields{Header: hdr(0x2201, 0x0203, 12_000_000_456), Stock: itch.NewSymbol("AAPL"),
		MarketCategory: 'Q', FinancialStatus: 'N', RoundLotSize: 100, RoundLotsOnly: 'N',
		IssueClassification: 'C', IssueSubType: [2]byte{'Z', ' '}, Authenticity: 'P',
		ShortSaleThreshold: 'N', IPOFlag: 'Y', LULDRefPriceTier: '1', ETPFlag: 'N',
		ETPLeverageFactor: 0x01020304, InverseIndicator: 'Y'},
	&itch.StockTradingActionFields{Header: hdr(0x2202, 0x0304, 13_000_000_789), Stock: itch.NewSymbol("MSFT"),
		TradingState: 'T', Reserved: ' ', Reason: [4]byte{'L', 'U', 'D', 'P'}},
	&itch.RegSHOFields{Header: hdr(0x2203, 0x0405, 14_000_000_001), Stock: itch.NewSymbol("ZVZZT"), Action: '1'},
	&itch.MarketParticipantPositionFields{Header: hdr(0x2204, 0x0506, 15_000_000_002), MPID: itch.NewMPID("GSCO"),
		Stock: itch.NewSymbol("QQQ"), PrimaryMarketMaker: 'Y', MarketMakerMode: 'N', MarketParticipantState: 'A'},
	&itch.MWCBDeclineLevelFields{Header: hdr(0, 0x0607, 16_000_000_003),
		Level1: 0x0000_0003_1F2E_3D4C, Level2: 0x0000_0002_5B6A_7988, Level3: 0x0000_0001_97A6_B5C4},
	&itch.MWCBStatusFields{Header: hdr(0, 0x0708, 17_000_000_004), BreachedLevel: '2'},
	&itch.IPOQuotingPeriodFields{Header: hdr(0x2205, 0x0809, 18_000_000_005), Stock: itch.NewSymbol("NEWCO"),
		ReleaseTime: 41_400, ReleaseQualifier: 'A', IPOPrice: 25_5000},
	&itch.LULDAuctionCollarFields{Header: hdr(0x2206, 0x090A, 19_000_000_006), Stock: itch.NewSymbol("TSLA"),
		CollarRefPrice: 2_345_6700, UpperCollarPrice: 2_462_9900, LowerCollarPrice: 2_228_3300, CollarExtension: 3},
	&itch.OperationalHaltFields{Header: hdr(0x2207, 0x0A0B, 20_000_000_007), Stock: itch.NewSymbol("IBM"),
		MarketCode: 'Q', HaltAction: 'H'},
	&itch.AddOrderFields{Header: hdr(0x2208, 0x0B0C, 34_200_000_000_008), OrderRef: 0x0102030405060708,
		Side: 'B', Shares: 0x00010203, Stock: itch.NewSymbol("AAPL"), Price: 1_502_500},
	&itch.AddOrderMPIDFields{Header: hdr(0x2209, 0x0C0D, 34_200_000_000_009), OrderRef: 0x1112131415161718,
		Side: 'S', Shares: 0x00020304, Stock: itch.NewSymbol("NVDA"), Price: 4_501_234, Attribution: itch.NewMPID("MSCO")},
	&itch.OrderExecutedFields{Header: hdr(0x220A, 0x0D0E, 34_200_000_000_010), OrderRef: 0x2122232425262728,
		ExecutedShares: 0x00030405, MatchNumber: 0x3132333435363738},
	&itch.OrderExecutedWithPriceFields{Header: hdr(0x220B, 0x0E0F, 34_200_000_000_011), OrderRef: 0x4142434445464748,
		ExecutedShares: 0x00040506, MatchNumber: 0x5152535455565758, Printable: 'Y', ExecutionPrice: 999_9999},
	&itch.OrderCancelFields{Header: hdr(0x220C, 0x0F10, 34_200_000_000_012), OrderRef: 0x6162636465666768,
		CancelledShares: 0x00050607},
	&itch.OrderDeleteFields{Header: hdr(0x220D, 0x1011, 34_200_000_000_013), OrderRef: 0x7172737475767778},
	&itch.OrderReplaceFields{Header: hdr(0x220E, 0x1112, 34_200_000_000_014), OriginalOrderRef: 0x8182838485868788,
		NewOrderRef: 0x9192939495969798, Shares: 0x00060708, Price: 1_234_5678},
	&itch.TradeFields{Header: hdr(0x220F, 0x1213, 34_200_000_000_015), OrderRef: 0xA1A2A3A4A5A6A7A8,
		Side: 'B', Shares: 0x00070809, Stock: itch.NewSymbol("AMZN"), Price: 1_800_0001, MatchNumber: 0xB1B2B3B4B5B6B7B8},
	&itch.CrossTradeFields{Header: hdr(0x2210, 0x1314, 34_200_000_000_016), Shares: 0x0000_0001_0203_0405,
		Stock: itch.NewSymbol("SPY"), CrossPrice: 4_321_0000, MatchNumber: 0xC1C2C3C4C5C6C7C8, CrossType: 'O'},
	&itch.BrokenTradeFields{Header: hdr(0x2211, 0x1415, 34_200_000_000_017), MatchNumber: 0xD1D2D3D4D5D6D7D8},
	&itch.NOIIFields{Header: hdr(0x2212, 0x1516, 34_200_000_000_018), PairedShares: 0x0000_0000_0102_0304,
		ImbalanceShares: 0x0000_0000_0506_0708, ImbalanceDirection: 'S', Stock: itch.NewSymbol("META"),
		FarPrice: 5_001_0000, NearPrice: 5_002_0000, CurrentRefPrice: 5_003_0000, CrossType: 'C', PriceVariation: 'L'},
	&itch.RPIIFields{Header: hdr(0x2213, 0x1617, 34_200_000_000_019), Stock: itch.NewSymbol("GOOG"), InterestFlag: 'A'},
	&itch.DLCRFields{Header: hdr(0x2214, 0x1718, 34_200_000_000_020), Stock: itch.NewSymbol("DLCRX"),
		OpenEligibility: 'Y', MinAllowedPrice: 10_0000, MaxAllowedPrice: 20_0000, NearExecPrice: 15_0000,
		NearExecTime: 0x0000_1F2E_3D4C_5B6A, LowerPriceRangeCollar: 13_5000, UpperPriceRangeCollar: 16_5000},
}

func hdr(locate, tracking uint16, ts uint64) itch.Header {
	return itch.Header{Locate: locate, Tracking: tracking, Timestamp: ts}
}

// vector returns the test vector of type t.
func vector(t byte) itch.Encoder {
	for _, v := range vectors {
		if v.Type() == t {
			return v
		}
	}
	return nil
}

// blockStream returns every vector framed as blocks, in table order.
func blockStream() []byte {
	var b []byte
	for _, v := range vectors {
		b = v.AppendBlock(b)
	}
	return b
}

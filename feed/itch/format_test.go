package itch_test

import (
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/race"
)

func TestFormat(t *testing.T) {
	cases := []struct{ got, want string }{
		{string(itch.AppendPrice4(nil, 1_502_500)), "150.2500"},
		{string(itch.AppendPrice4(nil, 1)), "0.0001"},
		{string(itch.AppendPrice4(nil, 0)), "0.0000"},
		{string(itch.AppendPrice4(nil, 0xFFFFFFFF)), "429496.7295"},
		{string(itch.AppendPrice8(nil, 300_000_000_000)), "3000.00000000"},
		{string(itch.AppendPrice8(nil, 12)), "0.00000012"},
		{string(itch.AppendTimestamp(nil, 34_200_000_000_008)), "09:30:00.000000008"},
		{string(itch.AppendTimestamp(nil, 0)), "00:00:00.000000000"},
		{string(itch.AppendTimestamp(nil, 57_599_999_999_999)), "15:59:59.999999999"},
		{string(itch.AppendTimestamp([]byte("t="), 3_723_000_000_001)), "t=01:02:03.000000001"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	buf := make([]byte, 0, 64)
	if a, exact := race.AllocsPerRun(t, 100, func() {
		buf = itch.AppendTimestamp(itch.AppendPrice4(buf[:0], 1234), 5)
	}); exact && a != 0 {
		t.Errorf("format allocs %v", a)
	}
}

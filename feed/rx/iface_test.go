package rx

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// A line on an interface the host does not have is a configuration error:
// every backend, auto included, fails at once with ErrNoInterface and one
// message naming the interface and the ones that exist, and the auto chain
// logs no fallback.
func TestOpenMissingInterface(t *testing.T) {
	all, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{BackendAuto, BackendXDP, BackendUring, BackendSocket} {
		var logged bytes.Buffer
		cfg := Config{
			Backend: b,
			Lines: []LineConfig{
				// Both lines name missing interfaces, so that a regression
				// cannot attach anything to the host's real interfaces.
				{Name: "A", Interface: "fhnope0", Group: netip.MustParseAddr("239.9.9.1"), Port: 26477},
				{Name: "B", Interface: "fhnope1", Group: netip.MustParseAddr("239.9.9.2"), Port: 26477},
			},
			Log: zerolog.New(&logged),
		}
		r, err := Open(cfg)
		if err == nil {
			r.Close()
			t.Fatalf("%s: Open with interface fhnope0 succeeded", b)
		}
		if !errors.Is(err, ErrNoInterface) {
			t.Errorf("%s: %v does not wrap ErrNoInterface", b, err)
		}
		var ne *NoInterfaceError
		if !errors.As(err, &ne) || ne.Name != "fhnope0" || len(ne.Have) != len(all) {
			t.Errorf("%s: %v: want a NoInterfaceError for fhnope0 listing %d interfaces", b, err, len(all))
		}
		if want := `open receiver: line A: no interface "fhnope0" on this host (have: ` + all[0].Name; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: got %q, want it to start with %q", b, err, want)
		}
		if logged.Len() != 0 {
			t.Errorf("%s: logged before failing:\n%s", b, logged.String())
		}
	}
}

func TestLookupInterface(t *testing.T) {
	ifi, err := LookupInterface("lo")
	if err != nil || ifi.Name != "lo" {
		t.Fatalf("LookupInterface(lo) = %v, %v", ifi, err)
	}
	if _, err := LookupInterface("fhnope0"); !errors.Is(err, ErrNoInterface) {
		t.Fatalf("LookupInterface(fhnope0): %v", err)
	}
}

package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/rx"
)

// base is a valid config; the bad cases edit one spot of it. Line numbers in
// the expected errors refer to this text.
const base = `feed:
  name: test
  protocol: itch50-moldudp64
  session: ABC
lines:
  a:
    interface: veth0
    group: 239.1.1.1
    port: 26477
  b:
    interface: veth0
    group: 239.1.1.2
    port: 26478
receive:
  backend: auto
  batch_size: 64
cores:
  receive: 0
  shards: [1]
book:
  depth: 10
shm:
  name: test
stats_interval: 5s
log:
  level: info
  format: console
`

// edit replaces the single occurrence of old in base by new.
func edit(t *testing.T, old, new string) string {
	t.Helper()
	if n := strings.Count(base, old); n != 1 {
		t.Fatalf("edit: %q occurs %d times in base", old, n)
	}
	return strings.Replace(base, old, new, 1)
}

func TestBaseParses(t *testing.T) {
	c, err := Parse("t.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	want := []Line{
		{Name: "A", Interface: "veth0", Group: netip.MustParseAddr("239.1.1.1"), Port: 26477},
		{Name: "B", Interface: "veth0", Group: netip.MustParseAddr("239.1.1.2"), Port: 26478},
	}
	if !reflect.DeepEqual(c.Lines, want) {
		t.Fatalf("lines %+v", c.Lines)
	}
	if c.Feed.Session != "ABC" || c.Cores.Receive != 0 || !reflect.DeepEqual(c.Cores.Shards, []int{1}) || c.ShardCount() != 1 {
		t.Fatalf("config %+v", c)
	}
}

// TestRTPriority: cores.rt_priority reaches the handler's config; absent
// is 0, normal scheduling.
// TestYAMLDirective: a %YAML directive before the document is YAML; it
// came back from the parser as a document of its own, read as the feed's.
func TestYAMLDirective(t *testing.T) {
	c, err := Parse("t.yaml", []byte("%YAML 1.2\n---\n"+base))
	if err != nil {
		t.Fatal(err)
	}
	if c.Feed.Name != "test" || len(c.Lines) != 2 {
		t.Fatalf("config %+v", c)
	}
}

func TestRTPriority(t *testing.T) {
	c, err := Parse("t.yaml", []byte(edit(t, "shards: [1]", "shards: [1]\n  rt_priority: 10")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cores.RTPriority != 10 {
		t.Fatalf("rt_priority %d, want 10", c.Cores.RTPriority)
	}
	if c, err = Parse("t.yaml", []byte(base)); err != nil || c.Cores.RTPriority != 0 {
		t.Fatalf("absent rt_priority: %d, %v", c.Cores.RTPriority, err)
	}
}

func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       string // the exact error
	}{
		{"unknown top-level key", base + "simbols: [AAPL]\n",
			`t.yaml:28: simbols: unknown field (did you mean "symbols"?)`},
		{"unknown top-level key, no suggestion", base + "colour: red\n",
			`t.yaml:28: colour: unknown field (want one of feed, lines, receive, cores, symbols, book, arbitration, shm, recovery, metrics, capture, stats_interval, log, user)`},
		{"unknown nested key", edit(t, "  backend: auto", "  bakend: auto"),
			`t.yaml:15: receive.bakend: unknown field (did you mean "backend"?)`},
		{"unknown key in a line", edit(t, "    port: 26478", "    port: 26478\n    prot: 1"),
			`t.yaml:14: lines.b.prot: unknown field (did you mean "port"?)`},
		{"unknown line", edit(t, "  b:\n", "  c:\n"),
			`t.yaml:10: lines.c: unknown field (lines are named a and b)`},
		{"bad group", edit(t, "239.1.1.1", "239.1.1.300"),
			`t.yaml:8: lines.a.group: "239.1.1.300" is not an IPv4 multicast address`},
		{"non-multicast group", edit(t, "239.1.1.2", "10.1.1.2"),
			`t.yaml:12: lines.b.group: "10.1.1.2" is not an IPv4 multicast address`},
		{"IPv6 multicast group", edit(t, "239.1.1.2", `"ff02::1"`),
			`t.yaml:12: lines.b.group: "ff02::1" is not an IPv4 multicast address`},
		{"multicast source", edit(t, "    port: 26477", "    port: 26477\n    source: 239.0.0.1"),
			`t.yaml:10: lines.a.source: "239.0.0.1" is not an IPv4 unicast address`},
		{"port 0", edit(t, "port: 26477", "port: 0"),
			`t.yaml:9: lines.a.port: 0 is out of range (1..65535)`},
		{"port 70000", edit(t, "port: 26478", "port: 70000"),
			`t.yaml:13: lines.b.port: 70000 is out of range (1..65535)`},
		// Before, accepted as port 11583: YAML 1.1's octal.
		{"port with a leading zero", edit(t, "port: 26477", "port: 026477"),
			`t.yaml:9: lines.a.port: 026477 has a leading zero, which YAML reads as octal (0o...): write it without the zero`},
		// Before: want an integer, got "08080".
		{"port with a leading zero, not octal", edit(t, "port: 26478", "port: 08080"),
			`t.yaml:13: lines.b.port: 08080 has a leading zero, which YAML reads as octal (0o...): write it without the zero`},
		{"core with a leading zero", edit(t, "  receive: 0", "  receive: 010"),
			`t.yaml:18: cores.receive: 010 has a leading zero, which YAML reads as octal (0o...): write it without the zero`},
		{"port not a number", edit(t, "port: 26478", "port: http"),
			`t.yaml:13: lines.b.port: want an integer in 1..65535, got "http"`},
		{"bad backend", edit(t, "backend: auto", "backend: dpdk"),
			`t.yaml:15: receive.backend: "dpdk" is not one of auto, xdp, uring, socket`},
		{"misspelt backend", edit(t, "backend: auto", "backend: uring2"),
			`t.yaml:15: receive.backend: "uring2" is not one of auto, xdp, uring, socket (did you mean "uring"?)`},
		{"bad duration", edit(t, "stats_interval: 5s", "stats_interval: 5 parsecs"),
			`t.yaml:24: stats_interval: "5 parsecs" is not a duration (like 500ms, 5s, 1m)`},
		{"duration without unit", edit(t, "stats_interval: 5s", "stats_interval: 5"),
			`t.yaml:24: stats_interval: "5" is not a duration (like 500ms, 5s, 1m)`},
		// Before: "not a duration (like 500ms, 5s, 1m)".
		{"duration too long", edit(t, "stats_interval: 5s", "stats_interval: 9999999999h"),
			`t.yaml:24: stats_interval: "9999999999h" is out of range (at most 2562047h47m16.854775807s)`},
		{"duration, a unit without a number", edit(t, "stats_interval: 5s", "stats_interval: .s"),
			`t.yaml:24: stats_interval: ".s" is not a duration (like 500ms, 5s, 1m)`},
		{"zero duration", edit(t, "stats_interval: 5s", "stats_interval: 0s"),
			`t.yaml:24: stats_interval: "0s" must be positive`},
		// Before, accepted: a stats line every 5 ms.
		{"stats interval too short", edit(t, "stats_interval: 5s", "stats_interval: 5ms"),
			`t.yaml:24: stats_interval: 5ms is below 100ms: one stats line a tick would flood the log`},
		{"bad log level", edit(t, "level: info", "level: verbose"),
			`t.yaml:26: log.level: "verbose" is not one of trace, debug, info, warn, error`},
		{"bad log format", edit(t, "format: console", "format: jsno"),
			`t.yaml:27: log.format: "jsno" is not one of console, json (did you mean "json"?)`},
		{"duplicate line names", edit(t, "  b:\n", "  a:\n"),
			`t.yaml:10: lines.a: duplicate line name (first at line 6)`},
		{"duplicate line names by case", edit(t, "  b:\n", "  A:\n"),
			`t.yaml:10: lines.a: duplicate line name (first at line 6)`},
		{"duplicate key", edit(t, "  depth: 10", "  depth: 10\n  depth: 12"),
			`t.yaml:22: book.depth: duplicate field (first at line 21)`},
		{"identical lines", edit(t, "group: 239.1.1.2\n    port: 26478", "group: 239.1.1.1\n    port: 26477"),
			`t.yaml:10: lines.b: same interface, group and port as lines.a`},
		{"depth 0", edit(t, "depth: 10", "depth: 0"),
			`t.yaml:21: book.depth: 0 is out of range (1..64)`},
		{"depth 65", edit(t, "depth: 10", "depth: 65"),
			`t.yaml:21: book.depth: 65 is out of range (1..64)`},
		{"wrong protocol", edit(t, "protocol: itch50-moldudp64", "protocol: itch41-soupbintcp"),
			`t.yaml:3: feed.protocol: "itch41-soupbintcp" is not supported (the only protocol is "itch50-moldudp64")`},
		{"session too long", edit(t, "session: ABC", "session: ABCDEFGHIJK"),
			`t.yaml:4: feed.session: "ABCDEFGHIJK" is 11 characters, a MoldUDP64 session has at most 10`},
		{"session not ASCII", edit(t, "session: ABC", "session: ABCé"),
			`t.yaml:4: feed.session: "ABCé" is not printable ASCII`},
		{"bad shm name", edit(t, "  name: test\nstats", "  name: my/shm\nstats"),
			`t.yaml:23: shm.name: "my/shm" is not a valid name (only A-Z a-z 0-9 . _ -, not empty, not . or ..)`},
		{"shm name dot-dot", edit(t, "  name: test\nstats", "  name: ..\nstats"),
			`t.yaml:23: shm.name: ".." is not a valid name (only A-Z a-z 0-9 . _ -, not empty, not . or ..)`},
		{"negative receive core", edit(t, "receive: 0", "receive: -1"),
			`t.yaml:18: cores.receive: -1 is out of range (0..65535)`},
		{"negative shard core", edit(t, "shards: [1]", "shards: [1, -2]"),
			`t.yaml:19: cores.shards[1]: -2 is out of range (0..65535)`},
		{"shard core twice", edit(t, "shards: [1]", "shards: [1, 1]"),
			`t.yaml:19: cores.shards[1]: 1 is listed twice (first at line 19)`},
		{"shards not a list", edit(t, "shards: [1]", "shards: 2"),
			`t.yaml:19: cores.shards: want a list, got "2"`},
		{"rt priority 100", edit(t, "shards: [1]", "shards: [1]\n  rt_priority: 100"),
			`t.yaml:20: cores.rt_priority: 100 is out of range (0..99)`},
		{"rt priority negative", edit(t, "shards: [1]", "shards: [1]\n  rt_priority: -1"),
			`t.yaml:20: cores.rt_priority: -1 is out of range (0..99)`},
		{"rt priority not a number", edit(t, "shards: [1]", "shards: [1]\n  rt_priority: high"),
			`t.yaml:20: cores.rt_priority: want an integer in 0..99, got "high"`},
		{"rt priority without a receive core", edit(t, "  receive: 0\n  shards: [1]", "  shards: [1]\n  rt_priority: 10"),
			`t.yaml:19: cores.rt_priority: needs cores.receive: a real-time thread must be pinned to a core of its own`},
		{"batch size 0", edit(t, "batch_size: 64", "batch_size: 0"),
			`t.yaml:16: receive.batch_size: 0 is out of range (1..4096)`},
		{"ring size not power of two", edit(t, "batch_size: 64", "batch_size: 64\n  ring_size: 1000"),
			`t.yaml:17: receive.ring_size: 1000 is not a power of two`},
		{"capture buffer too small", base + "capture: {path: /tmp/x.pcap, buffer: 512KiB}\n",
			`t.yaml:28: capture.buffer: "512KiB" is out of range (1048576..1073741824 bytes)`},
		{"capture buffer too large", base + "capture:\n  buffer: 2GiB\n",
			`t.yaml:29: capture.buffer: "2GiB" is out of range (1048576..1073741824 bytes)`},
		{"capture buffer not a size", base + "capture:\n  buffer: lots\n",
			`t.yaml:29: capture.buffer: "lots" is not a size (bytes, or a number with KiB, MiB, GiB)`},
		{"capture path a directory", base + "capture:\n  path: /var/lib/feedhandler/\n",
			`t.yaml:29: capture.path: "/var/lib/feedhandler/" names a directory; name a file, such as /var/lib/feedhandler/nasdaq.pcap`},
		{"capture path with a control character", base + "capture:\n  path: \"a\\tb.pcap\"\n",
			`t.yaml:29: capture.path: "a\tb.pcap" has control characters`},
		{"capture path relative", base + "capture:\n  path: captures/nasdaq.pcap\n",
			`t.yaml:29: capture.path: "captures/nasdaq.pcap" is relative: it would name a file in the working directory, / under systemd but the shell's for feedhandler check; give an absolute path, such as /var/lib/feedhandler/nasdaq.pcap`},
		{"capture path a list", base + "capture:\n  path: [a]\n",
			`t.yaml:29: capture.path: want a string, got a list`},
		{"capture rotate_size too small", base + "capture:\n  rotate_size: 512KiB\n",
			`t.yaml:29: capture.rotate_size: 524288 bytes is below 1048576 (1MiB): 0 never rotates`},
		{"capture rotate_size too large", base + "capture:\n  rotate_size: 2000GiB\n",
			`t.yaml:29: capture.rotate_size: "2000GiB" is out of range (0..1099511627776 bytes)`},
		{"capture unknown key", base + "capture:\n  file: x.pcap\n",
			`t.yaml:29: capture.file: unknown field (want one of path, buffer, rotate_size)`},
		{"bad recv_buffer", edit(t, "batch_size: 64", "batch_size: 64\n  recv_buffer: 8 parsecs"),
			`t.yaml:17: receive.recv_buffer: "8 parsecs" is not a size (bytes, or a number with KiB, MiB, GiB)`},
		{"busy_poll not bool", edit(t, "batch_size: 64", "batch_size: 64\n  busy_poll: sometimes"),
			`t.yaml:17: receive.busy_poll: want true or false, got "sometimes"`},
		// Before, accepted here and refused when the io_uring backend
		// opened, at every start (exit 1, restarted).
		{"uring ring above its kernel limit", edit(t, "backend: auto\n  batch_size: 64", "backend: uring\n  batch_size: 64\n  ring_size: 65536"),
			`t.yaml:17: receive.ring_size: 65536 is above the 32768 buffers an io_uring provided buffer ring holds (backend uring; AF_XDP takes more)`},
		{"uring ring below two batches", edit(t, "backend: auto\n  batch_size: 64", "backend: uring\n  batch_size: 64\n  ring_size: 64"),
			`t.yaml:17: receive.ring_size: 64 is below twice receive.batch_size (64), the least the io_uring backend takes (backend uring)`},
		{"uring batch above half the default ring", edit(t, "backend: auto\n  batch_size: 64", "backend: uring\n  batch_size: 4096"),
			`t.yaml:16: receive.batch_size: 4096 needs a receive.ring_size of at least 8192, twice the batch, under backend uring (the default ring size is 4096)`},
		{"zero copy on with sockets", edit(t, "backend: auto", "backend: socket\n  zero_copy: on"),
			`t.yaml:16: receive.zero_copy: "on" needs backend xdp or auto, not socket`},
		{"missing lines.a", edit(t, "  a:\n    interface: veth0\n    group: 239.1.1.1\n    port: 26477\n", ""),
			`t.yaml:5: lines.a: missing required field`},
		{"missing group", edit(t, "    group: 239.1.1.1\n", ""),
			`t.yaml:6: lines.a.group: missing required field`},
		{"empty line a", edit(t, "  a:\n    interface: veth0\n    group: 239.1.1.1\n    port: 26477\n", "  a:\n"),
			"t.yaml:6: lines.a.interface: missing required field\n" +
				"t.yaml:6: lines.a.group: missing required field\n" +
				"t.yaml:6: lines.a.port: missing required field"},
		{"missing lines", "feed:\n  name: x\n",
			`t.yaml: lines: missing required field`},
		{"lines without a value", "feed:\n  name: x\nlines:\n",
			`t.yaml:3: lines: missing required field`},
		{"group without a value", edit(t, "    group: 239.1.1.1\n", "    group:\n"),
			`t.yaml:8: lines.a.group: missing required field`},
		{"missing feed name", edit(t, "  name: test\n  protocol", "  protocol"),
			`t.yaml:1: feed.name: missing required field`},
		{"bad interface", edit(t, "    interface: veth0\n    group: 239.1.1.1", "    interface: this-name-is-too-long0\n    group: 239.1.1.1"),
			`t.yaml:7: lines.a.interface: "this-name-is-too-long0" is not a valid interface name`},
		{"bad symbol", base + "symbols: [AAPL, msft]\n",
			`t.yaml:28: symbols[1]: "msft" is not a symbol (ITCH symbols are upper case: "MSFT")`},
		{"long symbol", base + "symbols:\n  - AAPL\n  - ABCDEFGHI\n",
			`t.yaml:30: symbols[1]: "ABCDEFGHI" is not a symbol (1 to 8 characters)`},
		{"too many shards", edit(t, "  shards: [1]", "  shards: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255, 256]"),
			`t.yaml:19: cores.shards: 257 entries: at most 256 shards`},
		// Before: 'want a string, got nothing'.
		{"symbol NULL unquoted", base + "symbols: [AAPL, NULL]\n",
			`t.yaml:28: symbols[1]: want a string, got YAML's null (NULL); quote it, "NULL", if that is the value`},
		{"symbol twice", base + "symbols:\n  - AAPL\n  - MSFT\n  - AAPL\n",
			`t.yaml:31: symbols[2]: "AAPL" is listed twice (first at line 29)`},
		{"bad metrics address", base + "metrics:\n  listen: localhost\n",
			`t.yaml:29: metrics.listen: "localhost" is not host:port`},
		// Before: 'port "0" is not a number in 1..65535' (it is a number).
		{"metrics port 0", base + "metrics:\n  listen: 127.0.0.1:0\n",
			`t.yaml:29: metrics.listen: "127.0.0.1:0": port 0 is out of range (1..65535)`},
		{"metrics port above 65535", base + "metrics:\n  listen: \":99999\"\n",
			`t.yaml:29: metrics.listen: ":99999": port 99999 is out of range (1..65535)`},
		{"metrics port a name", base + "metrics:\n  listen: \":http\"\n",
			`t.yaml:29: metrics.listen: ":http": port "http" is not a number in 1..65535`},
		{"recovery: old server key", base + "recovery:\n  server: 10.1.2.3:26400\n",
			`t.yaml:29: recovery.server: replaced by recovery.rerequest.servers (a list of host:port)`},
		{"rerequest server without host", base + "recovery:\n  rerequest:\n    servers: [\":26400\"]\n",
			`t.yaml:30: recovery.rerequest.servers[0]: ":26400" has no host`},
		{"rerequest server by name", base + "recovery:\n  rerequest:\n    servers: [\"rr.example:26400\"]\n",
			`t.yaml:30: recovery.rerequest.servers[0]: "rr.example:26400": want an IPv4 address:port (the re-request client sends UDP to it)`},
		{"rerequest request too large", base + "recovery:\n  rerequest:\n    max_request_messages: 70000\n",
			`t.yaml:30: recovery.rerequest.max_request_messages: 70000 is out of range (1..65534)`},
		{"late_join unknown", base + "recovery:\n  late_join: maybe\n",
			`t.yaml:29: recovery.late_join: "maybe" is not one of snapshot, rerequest, off`},
		{"sequence_restart unknown", base + "arbitration:\n  sequence_restart: ignore\n",
			`t.yaml:29: arbitration.sequence_restart: "ignore" is not one of rebuild, hold`},
		{"spill under max_pending", base + "recovery:\n  spill: 100\n",
			`t.yaml:29: recovery.spill: 100 is smaller than arbitration.max_pending (8192): the spill holds at least what arbitration holds`},
		// Relative, as capture.path: check (the shell's working directory)
		// would read another file than the start (/ under systemd).
		{"snapshot password_file relative", base + "recovery:\n  snapshot:\n    server: 10.0.0.1:4000\n    username: u\n    password_file: secrets/glimpse.pw\n",
			`t.yaml:32: recovery.snapshot.password_file: "secrets/glimpse.pw" is relative: it would name a file in the working directory, / under systemd but the shell's for feedhandler check; give an absolute path, such as /etc/feedhandler/glimpse.password`},
		{"snapshot retry_max too short", base + "recovery:\n  snapshot:\n    retry_max: 500ms\n",
			`t.yaml:30: recovery.snapshot.retry_max: 500ms is out of range [1s, 1h0m0s] (the first retry waits retry, doubled per consecutive failure up to this)`},
		{"snapshot retry_max under the default retry", base + "recovery:\n  snapshot:\n    retry_max: 1s\n",
			`t.yaml:30: recovery.snapshot.retry_max: 1s is shorter than recovery.snapshot.retry (5s): the wait after a failed snapshot starts at retry and is doubled up to retry_max`},
		{"snapshot retry too short", base + "recovery:\n  snapshot:\n    retry: 100ms\n",
			`t.yaml:30: recovery.snapshot.retry: 100ms is out of range [1s, 10m0s] (the wait after a failed snapshot, doubled per consecutive failure up to retry_max)`},
		{"rerequest server_rest too short", base + "recovery:\n  rerequest:\n    server_rest: 10ms\n",
			`t.yaml:30: recovery.rerequest.server_rest: 10ms is out of range [100ms, 10m0s] (gaps skip re-request this long after every server failed a range, doubled per such failure in a row up to server_rest_max)`},
		{"rerequest server_rest zero", base + "recovery:\n  rerequest:\n    server_rest: 0s\n",
			`t.yaml:30: recovery.rerequest.server_rest: "0s" must be positive`},
		{"rerequest server_rest_max too long", base + "recovery:\n  rerequest:\n    server_rest_max: 2h\n",
			`t.yaml:30: recovery.rerequest.server_rest_max: 2h0m0s is out of range [100ms, 1h0m0s] (the rest after failures in a row, server_rest doubled, stops growing here)`},
		{"rerequest server_rest_max below server_rest", base + "recovery:\n  rerequest:\n    server_rest_max: 5s\n    server_rest: 10s\n",
			`t.yaml:30: recovery.rerequest.server_rest_max: 5s is shorter than recovery.rerequest.server_rest (10s): the rest starts at server_rest and is doubled up to server_rest_max`},
		{"rerequest server_rest over the default server_rest_max", base + "recovery:\n  rerequest:\n    server_rest: 1m\n",
			`t.yaml:30: recovery.rerequest.server_rest: 1m0s is longer than recovery.rerequest.server_rest_max (30s, its default): the rest starts at server_rest and is doubled up to server_rest_max; raise server_rest_max too`},
		{"rerequest recv_buffer too small", base + "recovery:\n  rerequest:\n    recv_buffer: 4KiB\n",
			`t.yaml:30: recovery.rerequest.recv_buffer: "4KiB" is out of range (65536..1073741824 bytes)`},
		{"rerequest recv_buffer too large", base + "recovery:\n  rerequest:\n    recv_buffer: 2GiB\n",
			`t.yaml:30: recovery.rerequest.recv_buffer: "2GiB" is out of range (65536..1073741824 bytes)`},
		{"rerequest recv_buffer not a size", base + "recovery:\n  rerequest:\n    recv_buffer: lots\n",
			`t.yaml:30: recovery.rerequest.recv_buffer: "lots" is not a size (bytes, or a number with KiB, MiB, GiB)`},
		{"snapshot connect_timeout zero", base + "recovery:\n  snapshot:\n    connect_timeout: 0s\n",
			`t.yaml:30: recovery.snapshot.connect_timeout: "0s" must be positive`},
		{"snapshot connect_timeout too long", base + "recovery:\n  snapshot:\n    connect_timeout: 2m\n",
			`t.yaml:30: recovery.snapshot.connect_timeout: 2m0s is out of range [100ms, 1m0s] (the dial and the login to the snapshot server)`},
		{"snapshot idle_timeout negative", base + "recovery:\n  snapshot:\n    idle_timeout: -15s\n",
			`t.yaml:30: recovery.snapshot.idle_timeout: "-15s" must be positive`},
		{"snapshot idle_timeout below the heartbeat", base + "recovery:\n  snapshot:\n    idle_timeout: 1s\n",
			`t.yaml:30: recovery.snapshot.idle_timeout: 1s is out of range [2s, 10m0s] (the snapshot server silent, no data nor heartbeat, this long: a stalled snapshot; it heartbeats every second)`},
		{"snapshot idle_timeout too long", base + "recovery:\n  snapshot:\n    idle_timeout: 1h\n",
			`t.yaml:30: recovery.snapshot.idle_timeout: 1h0m0s is out of range [2s, 10m0s] (the snapshot server silent, no data nor heartbeat, this long: a stalled snapshot; it heartbeats every second)`},
		{"snapshot max_duration zero", base + "recovery:\n  snapshot:\n    max_duration: 0s\n",
			`t.yaml:30: recovery.snapshot.max_duration: "0s" must be positive`},
		{"snapshot max_duration too long", base + "recovery:\n  snapshot:\n    max_duration: 25h\n",
			`t.yaml:30: recovery.snapshot.max_duration: 25h0m0s is out of range [1s, 24h0m0s] (from the Login Accepted to the End of Snapshot; a longer download is a failed snapshot)`},
		{"snapshot max_size too small", base + "recovery:\n  snapshot:\n    max_size: 64KiB\n",
			`t.yaml:30: recovery.snapshot.max_size: "64KiB" is out of range (1048576..68719476736 bytes)`},
		{"snapshot max_duration not a duration", base + "recovery:\n  snapshot:\n    max_duration: 10\n",
			`t.yaml:30: recovery.snapshot.max_duration: "10" is not a duration (like 500ms, 5s, 1m)`},
		{"snapshot retry too long", base + "recovery:\n  snapshot:\n    retry: 11m\n    retry_max: 1h\n",
			`t.yaml:30: recovery.snapshot.retry: 11m0s is out of range [1s, 10m0s] (the wait after a failed snapshot, doubled per consecutive failure up to retry_max)`},
		{"snapshot retry over the default retry_max", base + "recovery:\n  snapshot:\n    retry: 3m\n",
			`t.yaml:30: recovery.snapshot.retry: 3m0s is longer than recovery.snapshot.retry_max (2m0s, its default): the wait after a failed snapshot starts at retry and is doubled up to retry_max; raise retry_max too`},
		{"snapshot retry_max under retry, retry after it", base + "recovery:\n  snapshot:\n    retry_max: 10s\n    retry: 20s\n",
			`t.yaml:30: recovery.snapshot.retry_max: 10s is shorter than recovery.snapshot.retry (20s): the wait after a failed snapshot starts at retry and is doubled up to retry_max`},
		{"snapshot retry not a duration", base + "recovery:\n  snapshot:\n    retry: 5\n",
			`t.yaml:30: recovery.snapshot.retry: "5" is not a duration (like 500ms, 5s, 1m)`},
		{"snapshot retry_max not a duration", base + "recovery:\n  snapshot:\n    retry_max: 2\n",
			`t.yaml:30: recovery.snapshot.retry_max: "2" is not a duration (like 500ms, 5s, 1m)`},
		// Before, accepted: sent as their bytes (UTF-8, a line end),
		// refused at every login, the books never recovered.
		{"snapshot username not ASCII", base + "recovery:\n  snapshot:\n    server: 10.1.2.3:26401\n    username: \"usé\"\n    password_env: HOME\n",
			`t.yaml:31: recovery.snapshot.username: "usé": a SoupBinTCP username is printable ASCII without spaces`},
		{"snapshot username with a space", base + "recovery:\n  snapshot:\n    server: 10.1.2.3:26401\n    username: \"a b\"\n    password_env: HOME\n",
			`t.yaml:31: recovery.snapshot.username: "a b": a SoupBinTCP username is printable ASCII without spaces`},
		{"snapshot session with a line end", base + "recovery:\n  snapshot:\n    server: 10.1.2.3:26401\n    username: u\n    password_env: HOME\n    session: |\n      S1\n",
			`t.yaml:33: recovery.snapshot.session: "S1\n": a SoupBinTCP session is printable ASCII`},
		{"password in the file", base + "recovery:\n  snapshot:\n    server: 10.1.2.3:26401\n    username: u\n    password: secret\n",
			`t.yaml:32: recovery.snapshot.password: not accepted in the file: use password_file or password_env`},
		{"password env unset", base + "recovery:\n  snapshot:\n    server: 10.1.2.3:26401\n    username: u\n    password_env: FEEDHANDLER_TEST_UNSET_PW\n",
			`t.yaml:32: recovery.snapshot.password_env: environment variable FEEDHANDLER_TEST_UNSET_PW is not set (set it, e.g. in the unit's EnvironmentFile=, /etc/feedhandler/FEED.env, root-only: docs/OPERATIONS.md section 2)`},
		{"section not a mapping", edit(t, "book:\n  depth: 10\n", "book: 10\n"),
			`t.yaml:20: book: want a mapping, got "10"`},
		{"yaml syntax", edit(t, "shards: [1]", "shards: [1"),
			`t.yaml:20: YAML syntax: ',' or ']' must be specified`},
		// Before: only "found character '\t' that cannot start any token".
		{"yaml syntax: tab", edit(t, "  depth: 10", "\tdepth: 10"),
			"t.yaml:21: YAML syntax: found character '\t' that cannot start any token (a tab: YAML indents with spaces only)"},
		{"yaml syntax: unterminated quote", edit(t, "depth: 10", "depth: \"10"),
			`t.yaml:21: YAML syntax: could not find end character of double-quoted text`},
		{"second document", base + "---\nfeed: {name: y}\n",
			`t.yaml:29: a second YAML document; a feed file holds one`},
		// Before, accepted: the parser drops every document after an
		// empty one, so the second was never seen.
		{"second document after an empty one", base + "---\n---\nfeed: {name: y}\n",
			`t.yaml:30: a second YAML document; a feed file holds one`},
		{"second document after a comment-only one", base + "---\n# b\n---\nfeed: {name: y}\n",
			`t.yaml:31: a second YAML document; a feed file holds one`},
		// Before: "t.yaml: empty feed file" (the whole feed dropped).
		{"empty document first", "---\n---\n" + base,
			`t.yaml:2: an empty YAML document before this one (a second ---); a feed file holds one document`},
		// Before, accepted: requests sent to a group, to this host or to
		// the subnet, never answered; the same server twice, a failover
		// that waits its retries out again.
		{"rerequest server multicast", base + "recovery:\n  rerequest:\n    servers: [239.1.1.9:26400]\n",
			`t.yaml:30: recovery.rerequest.servers[0]: "239.1.1.9:26400": 239.1.1.9 is not a unicast address (a re-request server is one host, answering to ours)`},
		{"rerequest server unspecified", base + "recovery:\n  rerequest:\n    servers: [0.0.0.0:26400]\n",
			`t.yaml:30: recovery.rerequest.servers[0]: "0.0.0.0:26400": 0.0.0.0 is not a unicast address (a re-request server is one host, answering to ours)`},
		{"rerequest server broadcast", base + "recovery:\n  rerequest:\n    servers: [255.255.255.255:26400]\n",
			`t.yaml:30: recovery.rerequest.servers[0]: "255.255.255.255:26400": 255.255.255.255 is not a unicast address (a re-request server is one host, answering to ours)`},
		{"rerequest server twice", base + "recovery:\n  rerequest:\n    servers:\n      - 10.0.0.1:26400\n      - 10.0.0.2:26400\n      - 10.0.0.1:26400\n",
			`t.yaml:33: recovery.rerequest.servers[2]: "10.0.0.1:26400" is listed twice (first at line 31): a failover to the same server`},
		{"empty file", "", `t.yaml: empty feed file`},
		// Before: "lines.b.<<: unknown field (want one of interface, group,
		// port, source)", as if a key were misspelt.
		{"merge key", "feed: {name: x}\nlines:\n  a: &l {interface: eth0, group: 239.0.0.1, port: 1}\n  b:\n    <<: *l\n    group: 239.0.0.2\n",
			"t.yaml:5: lines.b.<<: merge keys (<<) are not supported: write the keys out (an alias can give a whole value or section)\nt.yaml:4: lines.b.interface: missing required field\nt.yaml:4: lines.b.port: missing required field"},
		{"merge key in lines", "feed: {name: x}\nlines:\n  <<: {a: {interface: eth0, group: 239.0.0.1, port: 1}}\n",
			"t.yaml:3: lines.<<: merge keys (<<) are not supported: write the keys out (an alias can give a whole value or section)\nt.yaml:2: lines.a: missing required field"},
		// Before: each at the anchor's line, lines.b.port at lines.a.port's
		// (line 6), cores.shards's duplicate at receive.queues's.
		{"alias to a bad value", "feed: {name: x}\nlines:\n  a:\n    interface: eth0\n    group: 239.0.0.1\n    port: &p 0\n  b:\n    interface: eth1\n    group: 239.0.0.2\n    port: *p\n",
			"t.yaml:6: lines.a.port: 0 is out of range (1..65535)\nt.yaml:10: lines.b.port: 0 is out of range (1..65535) (from the anchor at line 6)"},
		{"alias in a list", "feed: {name: x}\nlines:\n  a: {interface: eth0, group: 239.0.0.1, port: 1}\nreceive:\n  queues:\n    - &z 1\n    - *z\n",
			"t.yaml:7: receive.queues[1]: 1 is listed twice (first at line 6) (from the anchor at line 6)"},
		{"alias to a section", "feed: {name: x}\nlines:\n  a: {interface: eth0, group: 239.0.0.1, port: 1}\narbitration: &b\n  max_pending: 16\nbook: *b\n",
			`t.yaml:6: book.max_pending: unknown field (want one of depth, max_orders, max_locates) (from the anchor at line 5)`},
		// Before: "t.yaml:1: want a mapping, got "\xff\xfe\x00f"", feed
		// and lines missing; a byte that is not UTF-8 in a comment was
		// accepted, in capture.path written into the file's name.
		{"UTF-16", "\xff\xfef\x00e\x00e\x00d\x00:\x00",
			`t.yaml:1: not UTF-8 text (byte 0xff): save the feed file as UTF-8 (it looks like UTF-16, as some Windows editors save)`},
		{"Latin-1 comment", edit(t, "  depth: 10", "  depth: 10 # caf\xe9"),
			`t.yaml:21: not UTF-8 text (byte 0xe9): save the feed file as UTF-8`},
		{"Latin-1 path", base + "capture:\n  path: /var/lib/caf\xe9.pcap\n",
			`t.yaml:29: not UTF-8 text (byte 0xe9): save the feed file as UTF-8`},
		// Before: "t.yaml:1: want a mapping, got "%"", a second document,
		// feed and lines missing.
		// Before: accepted as the integer 10 (the tag was dropped).
		{"integer tagged a string", edit(t, "  depth: 10", "  depth: !!str 10"),
			`t.yaml:21: book.depth: want an integer in 1..64, got "10" (tagged !!str, a string)`},
		{"port tagged a string", edit(t, "port: 26478", "port: !<tag:yaml.org,2002:str> 26478"),
			`t.yaml:13: lines.b.port: want an integer in 1..65535, got "26478" (tagged !<tag:yaml.org,2002:str>, a string)`},
		{"bool tagged a string", edit(t, "  backend: auto", "  backend: auto\n  busy_poll: !!str true"),
			`t.yaml:16: receive.busy_poll: want true or false, got "true" (tagged !!str, a string)`},
		{"YAML directive and a bad field", "%YAML 1.2\n---\n" + edit(t, "port: 26478", "port: 0"),
			`t.yaml:15: lines.b.port: 0 is out of range (1..65535)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error; parsed %+v", c)
			}
			if c != nil {
				t.Fatal("config returned with an error")
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n got: %s\nwant: %s", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatal("error does not wrap ErrInvalid")
			}
			var e *Error
			if !errors.As(err, &e) || e.File != "t.yaml" {
				t.Fatalf("error is not an *Error for t.yaml: %#v", err)
			}
		})
	}
}

func TestAllErrorsReported(t *testing.T) {
	y := strings.NewReplacer("port: 26477", "port: 0", "depth: 10", "depth: 99", "level: info", "level: loud").Replace(base)
	_, err := Parse("t.yaml", []byte(y))
	if err == nil {
		t.Fatal("no error")
	}
	want := "t.yaml:9: lines.a.port: 0 is out of range (1..65535)\n" +
		"t.yaml:21: book.depth: 99 is out of range (1..64)\n" +
		`t.yaml:26: log.level: "loud" is not one of trace, debug, info, warn, error`
	if err.Error() != want {
		t.Fatalf("got\n%s\nwant\n%s", err, want)
	}
}

// TestRecoverySection parses every recovery key; the password comes from
// the environment and never appears in the logged config.
func TestRecoverySection(t *testing.T) {
	t.Setenv("FEEDHANDLER_TEST_PW", "s3cret")
	c, err := Parse("r.yaml", []byte(`feed: {name: r}
lines:
  a: {interface: eth0, group: 239.0.0.1, port: 1}
recovery:
  rerequest:
    servers: [10.0.0.1:26400, 10.0.0.2:26400]
    timeout: 5ms
    retries: 2
    max_request_messages: 500
    requests_per_second: 200
    max_rerequest_gap: 10000
    server_rest_max: 2m
    server_rest: 500ms
    recv_buffer: 16MiB
    source_port: server
  snapshot:
    server: 10.0.0.3:26401
    username: user1
    password_env: FEEDHANDLER_TEST_PW
    session: S1
    retry_max: 30s
    retry: 2s
    connect_timeout: 3s
    idle_timeout: 20s
    max_duration: 30m
    max_size: 512MiB
  late_join: rerequest
  spill: 65536
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Recovery{
		Rerequest: Rerequest{Servers: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:26400"), netip.MustParseAddrPort("10.0.0.2:26400")},
			Timeout: 5 * time.Millisecond, Retries: 2, MaxRequestMessages: 500, RequestsPerSecond: 200, MaxRerequestGap: 10000,
			ServerRest: 500 * time.Millisecond, ServerRestMax: 2 * time.Minute, RecvBuffer: 16 << 20, SourcePort: "server"},
		Snapshot: Snapshot{Server: "10.0.0.3:26401", Username: "user1", PasswordEnv: "FEEDHANDLER_TEST_PW", Session: "S1", Password: "s3cret", Retry: 2 * time.Second, RetryMax: 30 * time.Second,
			ConnectTimeout: 3 * time.Second, IdleTimeout: 20 * time.Second, MaxDuration: 30 * time.Minute, MaxSize: 512 << 20},
		LateJoin: "rerequest", Spill: 65536,
	}
	if !reflect.DeepEqual(c.Recovery, want) {
		t.Fatalf("recovery\n got %+v\nwant %+v", c.Recovery, want)
	}
	var buf bytes.Buffer
	l := zerolog.New(&buf)
	l.Info().Object("config", c).Msg("")
	if strings.Contains(buf.String(), "s3cret") {
		t.Fatalf("the password is logged: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "FEEDHANDLER_TEST_PW") {
		t.Fatalf("the password's source is not logged: %s", buf.String())
	}
	if !strings.Contains(buf.String(), `"snapshot_retry":2000,"snapshot_retry_max":30000`) {
		t.Fatalf("the snapshot's retry and retry_max are not logged: %s", buf.String())
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("min.yaml", []byte("feed: {name: min}\nlines:\n  a: {interface: eth0, group: 239.0.0.1, port: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:  "min.yaml",
		Feed:  Feed{Name: "min", Protocol: ProtocolITCH50MoldUDP64},
		Lines: []Line{{Name: "A", Interface: "eth0", Group: netip.MustParseAddr("239.0.0.1"), Port: 1}},
		Receive: Receive{Backend: rx.BackendAuto, ZeroCopy: "auto", XDPMode: "auto",
			BusyPollUsec: DefaultBusyPollUsec, BusyPollBudget: DefaultBusyPollBudget, BatchSize: DefaultBatchSize,
			RecvBuffer: DefaultRecvBuffer, PollTimeout: DefaultPollTimeout, VerifyChecksums: true},
		Cores: Cores{Receive: Unpinned, Shards: []int{Unpinned}},
		Book:  Book{Depth: 10, MaxOrders: 4 << 20, MaxLocates: 16384},
		Arbitration: Arbitration{Grace: 200 * time.Microsecond, Hold: 20 * time.Millisecond, LineTimeout: time.Second, MaxPending: 8192,
			SequenceRestart: "rebuild"},
		SHM: SHM{Name: "min", Mode: 0o640, Slots: 16384},
		Recovery: Recovery{
			Rerequest: Rerequest{Timeout: 20 * time.Millisecond, Retries: 3, MaxRequestMessages: 2000,
				RequestsPerSecond: 1000, MaxRerequestGap: 50000, ServerRest: time.Second, ServerRestMax: 30 * time.Second, RecvBuffer: 4 << 20, SourcePort: "any"},
			Snapshot: Snapshot{Retry: 5 * time.Second, RetryMax: 2 * time.Minute,
				ConnectTimeout: 5 * time.Second, IdleTimeout: 15 * time.Second, MaxDuration: 10 * time.Minute, MaxSize: 2 << 30},
			LateJoin: "snapshot", Spill: 32768,
		},
		Capture:       Capture{Buffer: 64 << 20},
		StatsInterval: 5 * time.Second,
		Log:           Log{Level: "info", Format: "console"},
	}
	want.fieldAt = c.fieldAt // where each field was, for CheckHost
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults\n got %+v\nwant %+v", c, want)
	}
	if c.ShardCount() != 1 || c.SymbolKeys() != nil || c.Log.ZerologLevel() != zerolog.InfoLevel {
		t.Fatal("derived defaults wrong")
	}
	if _, ok := c.Feed.SessionID(); ok {
		t.Fatal("SessionID ok without a session")
	}
}

func TestValuesAndConversions(t *testing.T) {
	y := `
common: &nic {interface: ens1f0, port: 26477}
feed: {name: x, session: 0000000042}
lines:
  A: {<<: *nic, group: 233.54.12.111}
`
	// Merge keys and unknown top-level anchor holders are rejected as unknown
	// fields; anchors and aliases themselves work:
	if _, err := Parse("t.yaml", []byte(y)); err == nil {
		t.Fatal("want errors for common and <<")
	}
	y = `
feed: {name: x, session: 0000000042}
lines:
  A: {interface: &nic ens1f0, group: 233.54.12.111, port: 26477, source: 192.0.2.1}
  b: {interface: *nic, group: 233.49.196.111, port: 26477}
receive: {backend: xdp, queues: [0, 3], zero_copy: on, xdp_mode: native, busy_poll: true,
  busy_poll_usec: 50, busy_poll_budget: 32, batch_size: 128, ring_size: 2048, recv_buffer: 16MiB, poll_timeout: 10ms,
  spin: 1ms}
cores: {receive: 1, shards: [2, 3, 4]}
symbols: [AAPL, BRK.A]
log: {level: debug, format: json}
`
	c, err := Parse("t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := c.Feed.SessionID(); !ok || string(id[:]) != "0000000042" {
		t.Fatalf("session %q", id)
	}
	if c.ShardCount() != 3 || c.Log.ZerologLevel() != zerolog.DebugLevel {
		t.Fatalf("%+v", c)
	}
	keys := c.SymbolKeys()
	if len(keys) != 2 || string(keys[0][:]) != "AAPL    " || string(keys[1][:]) != "BRK.A   " {
		t.Fatalf("symbol keys %q", keys)
	}
	log := zerolog.Nop()
	got := c.RxConfig(log)
	want := rx.Config{
		Lines: []rx.LineConfig{
			{Name: "A", Interface: "ens1f0", Group: netip.MustParseAddr("233.54.12.111"), Port: 26477, Source: netip.MustParseAddr("192.0.2.1")},
			{Name: "B", Interface: "ens1f0", Group: netip.MustParseAddr("233.49.196.111"), Port: 26477},
		},
		Backend: rx.BackendXDP, Queues: []int{0, 3}, ZeroCopy: "on", XDPMode: "native",
		BusyPoll: true, BusyPollUsec: 50, BusyPollBudget: 32, BatchSize: 128, RingSize: 2048,
		RecvBuffer: 16 << 20, PollTimeout: 10 * time.Millisecond, Spin: time.Millisecond, Log: log,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("RxConfig\n got %+v\nwant %+v", got, want)
	}
}

func TestShippedFeeds(t *testing.T) {
	// feeds/nasdaq.yaml takes the snapshot password from here.
	t.Setenv("FEEDHANDLER_GLIMPSE_PASSWORD", "pw")
	files, err := filepath.Glob("../../feeds/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("feeds: %v %v", files, err)
	}
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(c.Lines) != 2 {
			t.Errorf("%s: %d lines, want A and B", f, len(c.Lines))
		}
	}
	c, err := Load("../../feeds/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.SHM.Name != "demo" || c.Lines[0].Interface != "fhdemo1" || c.Receive.Backend != rx.BackendAuto ||
		c.Lines[0].Group != netip.MustParseAddr("239.77.1.1") || c.Lines[0].Port != 26477 ||
		c.Lines[1].Group != netip.MustParseAddr("239.77.1.2") || c.Lines[1].Port != 26478 {
		t.Fatalf("demo.yaml: %+v", c)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

// TestLoadNotAFeedFile: a path to something that is not a feed file is
// refused by its size, at once: a file larger than MaxFileSize (read
// whole and parsed before: 1.4 s and 70 MB a MiB of NULs, so a 64 MiB
// data file held check for over a minute and took gigabytes), and a
// device that never ends (/dev/zero: an unbounded read until the Go
// runtime's out-of-memory crash, exit 2, restarted by systemd). A
// directory says so.
func TestLoadNotAFeedFile(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, MaxFileSize+1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{big, "load feed config: " + big + " is larger than 1048576 bytes (1 MiB): not a feed file"},
		{t.TempDir(), "is a directory"},
	} {
		if _, err := Load(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%s): %v, want %q", c.path, err, c.want)
		}
	}
	// The largest accepted: a feed file padded with a comment to the limit.
	ok := filepath.Join(t.TempDir(), "ok.yaml")
	pad := MaxFileSize - len(base) - 1
	if err := os.WriteFile(ok, []byte(base+"#"+strings.Repeat("x", pad-1)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ok); err != nil {
		t.Errorf("a feed file of %d bytes: %v", MaxFileSize, err)
	}
}

// TestParseBounded: the YAML parser takes time quadratic in a mapping's
// keys (goccy/go-yaml#889) and in nesting depth: within MaxFileSize, a
// file of 200,000 keys or 100,000 nested brackets held check and the
// start for minutes (40,000 keys: 18 s). Such a file is refused before it
// is parsed, at the line past the bound; a file at the bounds parses.
func TestParseBounded(t *testing.T) {
	var keys strings.Builder
	for i := range maxKeys + 1 {
		fmt.Fprintf(&keys, "k%d: 1\n", i)
	}
	for _, c := range []struct{ name, file, want string }{
		{"keys", keys.String(), fmt.Sprintf("f.yaml:%d: more than %d keys (a feed file has about 80): not a feed file", maxKeys+1, maxKeys)},
		{"flow", "symbols: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n", fmt.Sprintf("f.yaml:1: nested more than %d deep (a feed file nests 4): not a feed file", maxDepth)},
		{"block", "symbols:\n" + strings.Repeat("- ", 5000) + "A\n", fmt.Sprintf("f.yaml:2: nested more than %d deep (a feed file nests 4): not a feed file", maxDepth)},
		{"flow on lines", "symbols:\n" + strings.Repeat("- [\n", 5000), fmt.Sprintf("f.yaml:%d: nested more than %d deep", maxDepth+1, maxDepth)},
	} {
		_, err := Parse("f.yaml", []byte(c.file))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			msg := fmt.Sprint(err)
			if len(msg) > 300 {
				msg = msg[:300] + "..."
			}
			t.Errorf("%s: %s, want %q", c.name, msg, c.want)
		}
	}
	// At the bounds: symbols nested as deep as allowed are a wrong type,
	// not refused; as many keys as allowed are unknown fields.
	deep := "symbols: " + strings.Repeat("[", maxDepth) + "A" + strings.Repeat("]", maxDepth) + "\n"
	if _, err := Parse("f.yaml", []byte(deep)); err == nil || strings.Contains(err.Error(), "nested more than") {
		t.Errorf("nested %d deep: %v", maxDepth, err)
	}
	atMost := strings.Join(strings.SplitAfter(keys.String(), "\n")[:maxKeys], "")
	if _, err := Parse("f.yaml", []byte(atMost)); err == nil || strings.Contains(err.Error(), "keys (a feed file") {
		t.Errorf("%d keys: refused by their count", maxKeys)
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"bakend", "backend"}, {"backedn", "backend"}, {"Backend", "backend"}, {"x", ""},
		{"zerocopy", "zero_copy"}, {"colour", ""},
	} {
		if got := suggest(tc.in, []string{"backend", "zero_copy", "queues", "log"}); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLogObject(t *testing.T) {
	c, err := Parse("t.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	l := zerolog.New(&b)
	l.Info().Object("config", c).Send()
	for _, want := range []string{`"feed":"test"`, `"line_A":{"interface":"veth0","group":"239.1.1.1","port":26477}`, `"shard_cores":[1]`, `"shm":"test"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("log line %s lacks %s", b.String(), want)
		}
	}
}

func TestArbitration(t *testing.T) {
	c, err := Parse("t.yaml", []byte(base+"arbitration:\n  grace: 100us\n  hold: 50ms\n  line_timeout: 2s\n  max_pending: 1024\n  sequence_restart: hold\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Arbitration{Grace: 100 * time.Microsecond, Hold: 50 * time.Millisecond, LineTimeout: 2 * time.Second, MaxPending: 1024,
		SequenceRestart: SequenceRestartHold}
	if c.Arbitration != want {
		t.Fatalf("arbitration %+v, want %+v", c.Arbitration, want)
	}
	d, err := Parse("t.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if d.Arbitration.Hold != DefaultHold || d.Arbitration.Grace != DefaultGrace || d.Arbitration.MaxPending != DefaultMaxPending {
		t.Fatalf("defaults %+v", d.Arbitration)
	}
	for _, bad := range []struct{ text, want string }{
		{"arbitration:\n  hold: 2m\n", "t.yaml:29: arbitration.hold: 2m0s is out of range [1µs, 1m0s]"},
		{"arbitration:\n  max_pending: 3\n", "t.yaml:29: arbitration.max_pending:"},
		{"arbitration:\n  holdd: 5ms\n", "t.yaml:29: arbitration.holdd: unknown field"},
	} {
		_, err := Parse("t.yaml", []byte(base+bad.text))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want it to contain %q", bad.text, err, bad.want)
		}
	}
}

func TestOperations(t *testing.T) {
	// shm adds lines under shm: (line 24 on), tail adds top-level keys (line 29 on).
	text := func(shm, tail string) string {
		return edit(t, "  name: test\nstats", "  name: test\n"+shm+"stats") + tail
	}
	for _, tc := range []struct {
		shm, tail string
		mode      os.FileMode
		group     string
		user      string
		slots     int
	}{
		{"  mode: 0640\n  group: mdread\n  slots: 24576\n", "user: feed\n", 0o640, "mdread", "feed", 24576},
		{"  mode: \"0600\"\n  group: 1234\n", "user: 65534\n", 0o600, "1234", "65534", DefaultSHMSlots},
		{"  mode: 0o660\n  slots: 1\n", "", 0o660, "", "", 1},
		{"  slots: 65536\n", "", 0o640, "", "", 65536},
		{"", "", 0o640, "", "", 16384},
	} {
		c, err := Parse("t.yaml", []byte(text(tc.shm, tc.tail)))
		if err != nil {
			t.Fatalf("%q: %v", tc.shm, err)
		}
		if c.SHM.Mode != tc.mode || c.SHM.Group != tc.group || c.User != tc.user || c.SHM.Slots != tc.slots {
			t.Errorf("%q: mode %04o group %q user %q slots %d, want %04o %q %q %d", tc.shm, c.SHM.Mode, c.SHM.Group, c.User, c.SHM.Slots,
				tc.mode, tc.group, tc.user, tc.slots)
		}
	}
	for _, bad := range []struct{ shm, tail, want string }{
		{"  mode: 0800\n", "", `t.yaml:24: shm.mode: "0800" is not an octal permission mode`},
		{"  mode: 0440\n", "", "t.yaml:24: shm.mode: 0440: the handler must be able to write its own file"},
		{"  mode: 0666\n", "", "t.yaml:24: shm.mode: 0666: world-writable market data"},
		{"  mode: [1]\n", "", "t.yaml:24: shm.mode: want an octal mode such as 0640"},
		{"  group: \"a b\"\n", "", `t.yaml:24: shm.group: "a b" is not a user or group name`},
		{"", "user: [x]\n", "t.yaml:28: user: want a name or a numeric id"},
		{"  slots: 0\n", "", "t.yaml:24: shm.slots: 0 is out of range (1..65536)"},
		{"  slots: -5\n", "", "t.yaml:24: shm.slots: -5 is out of range (1..65536)"},
		{"  slots: 65537\n", "", "t.yaml:24: shm.slots: 65537 is out of range (1..65536)"},
		{"  slots: 18446744073709551616\n", "", "t.yaml:24: shm.slots:"},
		{"  slots: lots\n", "", "t.yaml:24: shm.slots: want an integer in 1..65536, got"},
		{"  slots: \"20000\"\n", "", "t.yaml:24: shm.slots: want an integer in 1..65536, got"},
		{"  slots: 2.5e4\n", "", "t.yaml:24: shm.slots: want an integer in 1..65536, got"},
		{"  mode: 0640\n  slots: 16k\n", "", "t.yaml:25: shm.slots: want an integer in 1..65536, got"},
	} {
		_, err := Parse("t.yaml", []byte(text(bad.shm, bad.tail)))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q %q: error %v, want it to contain %q", bad.shm, bad.tail, err, bad.want)
		}
	}
}

// TestByteOrderMark: a file that starts with a UTF-8 byte order mark (as
// some editors save one) parses like the file without it. Before, the mark
// became part of the first key: "f.yaml:1: \ufefffeed: unknown field (want
// one of feed, ...)" and "feed: missing required field".
func TestByteOrderMark(t *testing.T) {
	want, err := Parse("t.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("t.yaml", []byte("\ufeff"+base))
	if err != nil {
		t.Fatalf("with a byte order mark: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("with a byte order mark:\n got %+v\nwant %+v", got, want)
	}
	// Only at the start: elsewhere it is a character of the value.
	if _, err := Parse("t.yaml", []byte(strings.Replace(base, "name: test", "name: \ufefftest", 1))); err == nil {
		t.Error("a byte order mark inside feed.name accepted")
	}
}

// TestLineEndings: a file saved with CR LF (Windows) or CR alone (classic
// Mac) line ends parses like the LF file, and each problem is named at the
// same line. Before, a byte that is not UTF-8 in a CR-only file was named
// at line 1 (its lines were counted by LF alone), where the parser's own
// problems had the right line.
func TestLineEndings(t *testing.T) {
	want, err := Parse("t.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"out of range": edit(t, "port: 26478", "port: 0"),
		"not UTF-8":    edit(t, "  depth: 10", "  depth: 10 # caf\xe9"),
		"duplicate":    edit(t, "  depth: 10", "  depth: 10\n  depth: 12"),
		"tab":          edit(t, "  depth: 10", "\tdepth: 10"),
		"unknown":      edit(t, "  depth: 10", "  deph: 10"),
	}
	for _, eol := range []string{"\r\n", "\r"} {
		got, err := Parse("t.yaml", []byte(strings.ReplaceAll(base, "\n", eol)))
		if err != nil {
			t.Fatalf("%q line ends: %v", eol, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q line ends:\n got %+v\nwant %+v", eol, got, want)
		}
		for name, text := range bad {
			_, lf := Parse("t.yaml", []byte(text))
			_, other := Parse("t.yaml", []byte(strings.ReplaceAll(text, "\n", eol)))
			if lf == nil || other == nil || other.Error() != lf.Error() {
				t.Errorf("%s, %q line ends: %v; with LF: %v", name, eol, other, lf)
			}
		}
	}
}

// TestPastedSpaces: a no-break space (U+00A0) or an invisible character
// (U+200B), as text pasted from a web page, a wiki or a chat carries, is
// named with what to do, at its line. Before, the key was printed bare
// ("t.yaml:9:     port: unknown field (want one of feed, lines, ...)",
// which reads as an indented known key) and syntax errors said only the
// parser's words.
func TestPastedSpaces(t *testing.T) {
	const hint = "(a no-break space, as pasted text has): YAML indents and separates with ASCII spaces only; retype them"
	for _, tc := range []struct{ name, yaml, want string }{
		{"indented with one", edit(t, "    port: 26477", "\u00a0   port: 26477"),
			`t.yaml:9: YAML syntax: mapping value is not allowed in this context (the line holds U+00A0 ` + hint + ")"},
		{"indented with one, at the top", base + "\u00a0 user: nobody\n",
			`t.yaml:28: "\u00a0 user": unknown field: its name holds U+00A0 ` + hint},
		{"in a line's indent", edit(t, "    port: 26477", "  \u00a0 port: 26477"),
			`t.yaml:9: lines."\u00a0 port": unknown field: its name holds U+00A0 ` + hint},
		{"in a key", edit(t, "  depth: 10", "  \u200bdepth: 10"),
			`t.yaml:21: book."\u200bdepth": unknown field: its name holds U+200B (an invisible character, as pasted text has): YAML indents and separates with ASCII spaces only; retype them`},
		{"after a colon", edit(t, "    port: 26477", "    port:\u00a026477"),
			`t.yaml:9: YAML syntax: non-map value is specified (the line holds U+00A0 ` + hint + ")"},
		{"after a colon, the one key", edit(t, "  depth: 10", "  depth:\u00a010"),
			`t.yaml:21: book: want a mapping, got "depth:\u00a010" (it holds U+00A0 ` + hint + ")"},
		{"after a value", edit(t, "port: 26478", "port: 26478\u00a0"),
			`t.yaml:13: lines.b.port: want an integer in 1..65535, got "26478\u00a0" (it holds U+00A0 ` + hint + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n got: %v\nwant it to hold: %s", err, tc.want)
			}
		})
	}
}

// TestSyntaxHints: the YAML syntax errors a hand-edited feed file meets
// most (a key without its colon or the space after it, a line indented
// out of line with its section) say which key and what to do. Before,
// only the parser's words: "t.yaml:13: YAML syntax: value is not allowed
// in this context" for a port indented 3 spaces instead of 4, and at the
// line before the mis-indented one when it goes deeper.
func TestSyntaxHints(t *testing.T) {
	const nest = ": YAML nests by indentation, so line a key up with the others of its section)"
	for _, tc := range []struct{ name, yaml, want string }{
		{"no colon", edit(t, "    port: 26477", "    port 26477"),
			`t.yaml:9: YAML syntax: non-map value is specified ("port 26477": a key needs a colon and a space, "port: 26477")`},
		{"no space after the colon", edit(t, "    port: 26477", "    port:26477"),
			`t.yaml:9: YAML syntax: non-map value is specified ("port:26477": a key's colon needs a space after it, "port: 26477")`},
		{"indented less", edit(t, "    port: 26478", "   port: 26478"),
			`t.yaml:13: YAML syntax: value is not allowed in this context (line 13, "port: 26478", is indented 3 space(s), where the keys above it are at 0, 2 or 4` + nest},
		{"a section indented", edit(t, "  b:", " b:"),
			`t.yaml:10: YAML syntax: value is not allowed in this context (line 10, "b:", is indented 1 space(s), where the keys above it are at 0, 2 or 4` + nest},
		{"indented more", edit(t, "    group: 239.1.1.1", "     group: 239.1.1.1"),
			`t.yaml:7: YAML syntax: mapping value is not allowed in this context (line 8, "group: 239.1.1.1", is indented 5 space(s), where the keys above it are at 0, 2 or 4` + nest},
		{"in a list's section, with comments", base + "recovery:\n  rerequest:   # re-request\n    servers:\n      - 10.1.2.3:26400\n      - 10.1.2.4:26400\n\n    # the first answer\n   timeout: 20ms\n",
			`t.yaml:35: YAML syntax: value is not allowed in this context (line 35, "timeout: 20ms", is indented 3 space(s), where the keys above it are at 0, 2, 4, 6 or 8` + nest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

// TestSpillCheckAnyOrder: recovery.spill is checked against
// arbitration.max_pending as the file sets both, whichever section comes
// first (a YAML mapping has no order). Before, the check ran while the
// recovery section was read, against the default max_pending when
// arbitration came later: a valid file was refused and an invalid one
// accepted.
func TestSpillCheckAnyOrder(t *testing.T) {
	for _, order := range []string{"recovery first", "arbitration first"} {
		both := func(spill, pending int) string {
			r := fmt.Sprintf("recovery:\n  spill: %d\n", spill)
			a := fmt.Sprintf("arbitration:\n  max_pending: %d\n", pending)
			if order == "recovery first" {
				return base + r + a
			}
			return base + a + r
		}
		c, err := Parse("t.yaml", []byte(both(1024, 512)))
		if err != nil {
			t.Errorf("%s: spill 1024 over max_pending 512 refused: %v", order, err)
		} else if c.Recovery.Spill != 1024 || c.Arbitration.MaxPending != 512 {
			t.Errorf("%s: spill %d, max_pending %d", order, c.Recovery.Spill, c.Arbitration.MaxPending)
		}
		_, err = Parse("t.yaml", []byte(both(16384, 65536)))
		if err == nil || !strings.Contains(err.Error(), "recovery.spill: 16384 is smaller than arbitration.max_pending (65536)") {
			t.Errorf("%s: spill 16384 under max_pending 65536: %v, want it refused", order, err)
		}
	}
}

// TestSnapshotPasswordSource: a snapshot password that would be refused at
// login is a config error naming its field, not a login refused by the
// exchange at the first gap: an environment variable set but empty, a
// password file missing, empty, a directory or open to every
// user, a server with no password source at all. A good file, its line end
// trimmed, is read.
func TestSnapshotPasswordSource(t *testing.T) {
	dir := t.TempDir()
	// Open to others, as /etc is: a file in a directory they cannot
	// enter is accepted whatever its mode (TestPasswordFileOthersCannotReach).
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	snap := func(src string) string {
		return base + "recovery:\n  snapshot:\n    server: 10.1.2.3:26401\n    username: u\n" + src
	}
	t.Setenv("FEEDHANDLER_TEST_EMPTY_PW", "")
	t.Setenv("FEEDHANDLER_TEST_BLANK_PW", "   ")
	good := file("good.pw", "s3cret\n", 0o640)
	empty := file("empty.pw", "", 0o600)
	newline := file("newline.pw", "\r\n", 0o600)
	world := file("world.pw", "s3cret\n", 0o644)
	missing := filepath.Join(dir, "missing.pw")
	long := file("long.pw", "12345678901\n", 0o600)
	t.Setenv("FEEDHANDLER_TEST_LONG_PW", "12345678901")
	for _, c := range []struct{ name, yaml, want string }{
		{"env empty", snap("    password_env: FEEDHANDLER_TEST_EMPTY_PW\n"),
			`t.yaml:32: recovery.snapshot.password_env: environment variable FEEDHANDLER_TEST_EMPTY_PW is set but empty: the snapshot server would refuse the login (set it, e.g. in the unit's EnvironmentFile=)`},
		{"env blank", snap("    password_env: FEEDHANDLER_TEST_BLANK_PW\n"),
			`t.yaml:32: recovery.snapshot.password_env: environment variable FEEDHANDLER_TEST_BLANK_PW is set but empty: the snapshot server would refuse the login (set it, e.g. in the unit's EnvironmentFile=)`},
		{"env name empty", snap("    password_env: \"\"\n"),
			`t.yaml:32: recovery.snapshot.password_env: empty: give the name of the environment variable holding the password`},
		{"file empty", snap("    password_file: " + empty + "\n"),
			`t.yaml:32: recovery.snapshot.password_file: ` + empty + ` is empty: the snapshot server would refuse the login`},
		{"file only a line end", snap("    password_file: " + newline + "\n"),
			`t.yaml:32: recovery.snapshot.password_file: ` + newline + ` is empty: the snapshot server would refuse the login`},
		{"file missing", snap("    password_file: " + missing + "\n"),
			`t.yaml:32: recovery.snapshot.password_file: read password: open ` + missing + `: no such file or directory`},
		{"file a directory", snap("    password_file: " + dir + "\n"),
			`t.yaml:32: recovery.snapshot.password_file: read password: ` + dir + ` is a directory`},
		{"file world-readable", snap("    password_file: " + world + "\n"),
			`t.yaml:32: recovery.snapshot.password_file: ` + world + ` is open to every user (mode 0644) and every user can reach ` + world + `: the snapshot password would leak; chmod o-rwx ` + world + ` (and keep it owned by root, readable by the handler's group), or keep it where others cannot enter (a directory above it without o+x; Kubernetes: the secret volume's defaultMode: 0440 with the pod's fsGroup, or a mount under such a directory)`},
		// Longer than SoupBinTCP's 10 characters: the client refuses to
		// dial with it, at every snapshot.
		{"file too long", snap("    password_file: " + long + "\n"),
			`t.yaml:32: recovery.snapshot.password_file: ` + long + ` holds a password of 11 characters: SoupBinTCP's login has room for 10`},
		{"env too long", snap("    password_env: FEEDHANDLER_TEST_LONG_PW\n"),
			`t.yaml:32: recovery.snapshot.password_env: environment variable FEEDHANDLER_TEST_LONG_PW holds a password of 11 characters: SoupBinTCP's login has room for 10`},
		{"no source", snap(""),
			`t.yaml:30: recovery.snapshot: snapshot.server is set but neither password_file nor password_env is: the snapshot server would refuse the login`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("t.yaml", []byte(c.yaml))
			if err == nil {
				t.Fatalf("no error; password %q", cfg.Recovery.Snapshot.Password)
			}
			if err.Error() != c.want || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error\n got: %v\nwant: %s", err, c.want)
			}
		})
	}
	cfg, err := Parse("t.yaml", []byte(snap("    password_file: "+good+"\n")))
	if err != nil {
		t.Fatal(err)
	}
	if pw := cfg.Recovery.Snapshot.Password; pw != "s3cret" {
		t.Fatalf("password %q, want s3cret", pw)
	}
}

// TestCaptureRotateSize: capture.rotate_size takes a size (0: never).
func TestCaptureRotateSize(t *testing.T) {
	for text, want := range map[string]int64{"4GiB": 4 << 30, "0": 0, "1MiB": 1 << 20, "1024GiB": 1 << 40} {
		c, err := Parse("t.yaml", []byte("feed: {name: t}\nlines:\n  a: {interface: eth0, group: 239.0.0.1, port: 1}\ncapture:\n  path: /tmp/x.pcap\n  rotate_size: "+text+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		if c.Capture.RotateSize != want {
			t.Errorf("rotate_size %s: %d, want %d", text, c.Capture.RotateSize, want)
		}
	}
}

// TestLoadNotRegular: a feed file, or the password file it names, that is
// a FIFO nobody writes to is refused at once, not waited for: open(2) of
// a FIFO for reading blocks until a writer comes, so `feedhandler check`
// or a start hung there, before any log line, with nothing saying why
// (systemd's start timeout then killed it, and restarted it). A socket or
// a device is no feed file either (/dev/zero was read to the 1 MiB limit).
// Each run is bounded: Load and Parse run in a goroutine the test waits
// for at most 10 s, then it unblocks the open by opening the FIFO's write
// end.
func TestLoadNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "feed.yaml")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	pwFifo := filepath.Join(dir, "pw")
	if err := unix.Mkfifo(pwFifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "feed.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pwYAML := base + "recovery:\n  snapshot:\n    server: 10.1.2.3:26401\n    username: u\n    password_file: " + pwFifo + "\n"
	for _, c := range []struct {
		name, path string
		load       func() error
		fifo       string // unblocked by opening its write end if the load hangs
		want       string
	}{
		{"feed file a FIFO", fifo, func() error { _, err := Load(fifo); return err }, fifo,
			"load feed config: " + fifo + " is a FIFO (named pipe), not a regular file: give the feed file itself"},
		{"feed file a socket", sock, func() error { _, err := Load(sock); return err }, "",
			"load feed config: " + sock + " is a socket, not a regular file: give the feed file itself"},
		{"feed file a device", "/dev/zero", func() error { _, err := Load("/dev/zero"); return err }, "",
			"load feed config: /dev/zero is a character device, not a regular file: give the feed file itself"},
		{"password file a FIFO", pwFifo, func() error { _, err := Parse("t.yaml", []byte(pwYAML)); return err }, pwFifo,
			"t.yaml:32: recovery.snapshot.password_file: read password: " + pwFifo + " is a FIFO (named pipe), not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- c.load() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				// Let the blocked open go on, so the goroutine ends.
				if w, werr := os.OpenFile(c.fifo, os.O_WRONLY, 0); werr == nil {
					w.Close()
				}
				err = <-done
				t.Fatalf("still loading after 10 s (blocked opening %s); then: %v", c.path, err)
			}
			if err == nil || err.Error() != c.want {
				t.Errorf("error\n got: %v\nwant: %s", err, c.want)
			}
		})
	}
}

// TestPasswordFileOthersCannotReach: a password_file whose mode lets every
// user read it is accepted when every user cannot reach it: a directory
// above its real path (symbolic links followed) closes it to others (no
// o+x). That is a Kubernetes secret volume's layout (files 0644 by
// default, reached through ..data symbolic links) mounted under a
// directory of the service's own, and any file kept in a directory of
// mode 0750 or 0700: nobody else can open it whatever its mode. A file
// others can reach is refused, through a closed directory's symbolic link
// too (others open the real path), and the error says both ways out.
func TestPasswordFileOthersCannotReach(t *testing.T) {
	root := t.TempDir()
	// t.TempDir's directories are 0700, closed to others: open them.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(p string, mode os.FileMode) string {
		t.Helper()
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	// volume lays out a secret volume as the kubelet does in dir:
	// dir/pw -> ..data/pw, ..data -> ..TIMESTAMP, ..TIMESTAMP/pw 0644.
	volume := func(dir string) string {
		t.Helper()
		mkdir(dir, 0o1777)
		ts := mkdir(filepath.Join(dir, "..2026_12_06_04_40_00.123"), 0o755)
		if err := os.WriteFile(filepath.Join(ts, "pw"), []byte("s3cret"), 0o644); err != nil {
			t.Fatal(err)
		}
		link(filepath.Base(ts), filepath.Join(dir, "..data"))
		link(filepath.Join("..data", "pw"), filepath.Join(dir, "pw"))
		return filepath.Join(dir, "pw")
	}
	open := mkdir(filepath.Join(root, "open"), 0o755)
	closed := mkdir(filepath.Join(root, "closed"), 0o750)
	openVolume := volume(filepath.Join(open, "secret"))
	closedVolume := volume(filepath.Join(closed, "secret"))
	openFile := filepath.Join(open, "pw")
	if err := os.WriteFile(openFile, []byte("s3cret"), 0o644); err != nil {
		t.Fatal(err)
	}
	closedLinkToOpen := filepath.Join(closed, "link-to-open")
	link(openFile, closedLinkToOpen)
	openLinkToClosed := filepath.Join(open, "link-to-closed")
	link(closedVolume, openLinkToClosed)
	refused := func(p, real string) string {
		return `t.yaml:32: recovery.snapshot.password_file: ` + p + ` is open to every user (mode 0644) and every user can reach ` + real +
			`: the snapshot password would leak; chmod o-rwx ` + real + ` (and keep it owned by root, readable by the handler's group), or keep it where others cannot enter (a directory above it without o+x; Kubernetes: the secret volume's defaultMode: 0440 with the pod's fsGroup, or a mount under such a directory)`
	}
	for _, c := range []struct{ name, path, want string }{
		{"secret volume under a closed directory", closedVolume, ""},
		{"a link in an open directory to a closed one", openLinkToClosed, ""},
		{"secret volume others can reach", openVolume, refused(openVolume, filepath.Join(open, "secret", "..2026_12_06_04_40_00.123", "pw"))},
		{"a file others can reach", openFile, refused(openFile, openFile)},
		{"a link in a closed directory to a file others can reach", closedLinkToOpen, refused(closedLinkToOpen, openFile)},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("t.yaml", []byte(base+"recovery:\n  snapshot:\n    server: 10.1.2.3:26401\n    username: u\n    password_file: "+c.path+"\n"))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("%s: %v, want it accepted", c.path, err)
			case c.want == "" && cfg.Recovery.Snapshot.Password != "s3cret":
				t.Fatalf("%s: password %q, want s3cret", c.path, cfg.Recovery.Snapshot.Password)
			case c.want != "" && (err == nil || err.Error() != c.want):
				t.Fatalf("%s:\n got: %v\nwant: %s", c.path, err, c.want)
			}
		})
	}
}

// TestStrTagString: a value tagged !!str where a string is wanted is that
// string, digits and all (the integer fields refuse it, TestBadConfigs).
func TestStrTagString(t *testing.T) {
	c, err := Parse("t.yaml", []byte(edit(t, "  name: test\n  protocol", "  name: !!str 0x10\n  protocol")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Feed.Name != "0x10" {
		t.Fatalf("feed.name %q, want 0x10", c.Feed.Name)
	}
}

// TestErrorsCapped: a file with more problems than maxErrors reports the
// first maxErrors, in order, then how many more. Before, a list of 50,000
// duplicate symbols gave 49,999 "listed twice" lines (3.3 MB).
func TestErrorsCapped(t *testing.T) {
	const n = 50000
	var b strings.Builder
	b.WriteString(base + "symbols:\n")
	for range n {
		b.WriteString("  - AAPL\n")
	}
	_, err := Parse("t.yaml", []byte(b.String()))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v, want ErrInvalid", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 {
		t.Fatalf("%d lines (%d bytes) of errors, want %d then how many more", len(lines), len(err.Error()), maxErrors)
	}
	if want := `t.yaml:30: symbols[1]: "AAPL" is listed twice (first at line 29)`; lines[0] != want {
		t.Fatalf("first line %q, want %q", lines[0], want)
	}
	if want := fmt.Sprintf("t.yaml: ... and %d more problems", n-1-maxErrors); lines[maxErrors] != want {
		t.Fatalf("last line %q, want %q", lines[maxErrors], want)
	}
	errs := flatten(err)
	var last *Error
	if len(errs) != maxErrors+1 || !errors.As(errs[maxErrors], &last) {
		t.Fatalf("%d errors, the last %T: want %d *Error", len(errs), errs[len(errs)-1], maxErrors+1)
	}
	// At the bound, every problem and no count.
	_, err = Parse("t.yaml", []byte(base+"symbols: [AAPL"+strings.Repeat(", AAPL", maxErrors)+"]\n"))
	if got := strings.Count(err.Error(), "\n") + 1; got != maxErrors || strings.Contains(err.Error(), "more problems") {
		t.Fatalf("%d duplicates: %d lines, want %d without a count:\n%s", maxErrors, got, maxErrors, err)
	}
}

// TestLoadCheckLeavesHostErrorsToCheckHost: LoadCheck (feedhandler check)
// returns the config when the file's only problems are the snapshot
// password's source on this host, and CheckHost returns them with its own,
// so that check goes on to the rest; Load (run) still refuses them, and
// LoadCheck any file with another problem, all of them at once.
func TestLoadCheckLeavesHostErrorsToCheckHost(t *testing.T) {
	base := "feed: {name: t}\nlines:\n  a: {interface: fhck-none-cfg, group: 239.0.0.1, port: 1}\nrecovery:\n  snapshot:\n    server: 10.1.2.3:26401\n    username: u\n"
	missing := filepath.Join(t.TempDir(), "missing.pw")
	for _, c := range []struct{ name, src, want string }{
		{"env unset", "    password_env: FEEDHANDLER_TEST_UNSET_PW_H252\n",
			"t.yaml:8: recovery.snapshot.password_env: environment variable FEEDHANDLER_TEST_UNSET_PW_H252 is not set (set it, e.g. in the unit's EnvironmentFile=, /etc/feedhandler/FEED.env, root-only: docs/OPERATIONS.md section 2)"},
		{"file missing", "    password_file: " + missing + "\n",
			"t.yaml:8: recovery.snapshot.password_file: read password: open " + missing + ": no such file or directory"},
	} {
		yaml := []byte(base + c.src)
		if _, err := parse("t.yaml", yaml, loadRun); err == nil || err.Error() != c.want {
			t.Errorf("%s: Load: %v, want %s", c.name, err, c.want)
		}
		cfg, err := parse("t.yaml", yaml, loadCheck)
		if err != nil {
			t.Fatalf("%s: LoadCheck: %v, want the config (its password's problem left to CheckHost)", c.name, err)
		}
		got := cfg.CheckHost()
		iface := `t.yaml:3: lines.a.interface: no interface "fhck-none-cfg" on this host`
		if got == nil || !strings.Contains(got.Error(), c.want) || !strings.Contains(got.Error(), iface) || !errors.Is(got, ErrInvalid) {
			t.Errorf("%s: CheckHost: %v\nwant %q and %q", c.name, got, iface, c.want)
		}
		// With a problem of the file too: every one, no config.
		bad := append([]byte("nmae: x\n"), yaml...)
		want := "t.yaml:1: nmae: unknown field"
		if cfg, err := parse("t.yaml", bad, loadCheck); cfg != nil || err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), strings.Replace(c.want, ":8:", ":9:", 1)) {
			t.Errorf("%s: LoadCheck of a file with an unknown key: %v, want no config and %q with %q", c.name, err, want, c.want)
		}
	}
}

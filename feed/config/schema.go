package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/uring"
)

// defaults returns a Config holding every default.
func defaults() *Config {
	return &Config{
		Feed: Feed{Protocol: ProtocolITCH50MoldUDP64},
		Receive: Receive{
			Backend:         rx.BackendAuto,
			ZeroCopy:        "auto",
			XDPMode:         "auto",
			BusyPollUsec:    DefaultBusyPollUsec,
			BusyPollBudget:  DefaultBusyPollBudget,
			BatchSize:       DefaultBatchSize,
			RecvBuffer:      DefaultRecvBuffer,
			PollTimeout:     DefaultPollTimeout,
			VerifyChecksums: true,
		},
		Cores:       Cores{Receive: Unpinned, Shards: []int{Unpinned}},
		SHM:         SHM{Mode: DefaultSHMMode, Slots: DefaultSHMSlots},
		Book:        Book{Depth: DefaultDepth, MaxOrders: DefaultMaxOrders, MaxLocates: DefaultMaxLocates},
		Arbitration: Arbitration{Grace: DefaultGrace, Hold: DefaultHold, LineTimeout: DefaultLineTimeout, MaxPending: DefaultMaxPending, SequenceRestart: SequenceRestartRebuild},
		Recovery: Recovery{
			Rerequest: Rerequest{Timeout: DefaultRerequestTimeout, Retries: DefaultRerequestRetries,
				MaxRequestMessages: DefaultMaxRequestMessages, RequestsPerSecond: DefaultRequestsPerSecond,
				MaxRerequestGap: DefaultMaxRerequestGap, ServerRest: DefaultServerRest, ServerRestMax: DefaultServerRestMax,
				RecvBuffer: DefaultRerequestRecvBuffer, SourcePort: SourcePortAny},
			Snapshot: Snapshot{
				Retry: DefaultSnapshotRetry, RetryMax: DefaultSnapshotRetryMax,
				ConnectTimeout: DefaultSnapshotConnectTimeout, IdleTimeout: DefaultSnapshotIdleTimeout, MaxDuration: DefaultSnapshotMaxDuration,
				MaxSize: DefaultSnapshotMaxSize,
			},
			LateJoin: LateJoinSnapshot,
			Spill:    DefaultSpill,
		},
		Capture:       Capture{Buffer: capture.DefaultBuffer},
		StatsInterval: DefaultStatsInterval,
		Log:           Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// decode parses data and walks the document.
func (d *decoder) decode(data []byte) *Config {
	c := defaults()
	tokens := lexer.Tokenize(string(data))
	if tk, msg := tooComplex(tokens); tk != nil {
		d.add(tk, "", "%s", msg)
		return c
	}
	file, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		var se interface {
			GetToken() *token.Token
			GetMessage() string
		}
		if errors.As(err, &se) {
			msg := se.GetMessage()
			if strings.Contains(msg, "'\t'") {
				msg += " (a tab: YAML indents with spaces only)"
			} else if tk := se.GetToken(); tk != nil {
				if r, ok := oddSpaceOnLine(data, tk.Position.Line); ok {
					msg += " (the line holds " + oddSpaceHint(r) + ")"
				} else if hint := syntaxHint(data, tk.Position.Line, msg); hint != "" {
					msg += " (" + hint + ")"
				}
			}
			d.add(se.GetToken(), "", "YAML syntax: %s", msg)
		} else {
			d.add(nil, "", "YAML syntax: %v", err)
		}
		return c
	}
	var root ast.Node
	for _, doc := range file.Docs {
		// A directive (%YAML 1.2) comes back as a document of its own.
		if _, directive := doc.Body.(*ast.DirectiveNode); doc.Body != nil && !directive {
			root = doc.Body
			break
		}
	}
	// Documents are counted on the tokens: the parser drops every
	// document after an empty one ("---" followed by "---"), so a second
	// document there, or the whole file after a leading empty one, was
	// read as absent.
	switch tk, emptyFirst := secondDocument(tokens); {
	case tk == nil:
	case emptyFirst:
		d.add(tk, "", "an empty YAML document before this one (a second ---); a feed file holds one document")
		return c
	default:
		d.add(tk, "", "a second YAML document; a feed file holds one")
	}
	top := field{node: d.resolve(root)}
	var spill field // recovery.spill, checked below against arbitration.max_pending
	if top.absent() {
		d.add(nil, "", "empty feed file")
	}
	given := d.mapping(top, []entry{
		{"feed", func(f field) { d.feed(f, c) }},
		{"lines", func(f field) { d.lines(f, c) }},
		{"receive", func(f field) { d.receive(f, c) }},
		{"cores", func(f field) { d.cores(f, c) }},
		{"symbols", func(f field) { d.symbols(f, c) }},
		{"book", func(f field) { d.book(f, c) }},
		{"arbitration", func(f field) { d.arbitration(f, c) }},
		{"shm", func(f field) {
			d.mapping(f, []entry{
				{"name", func(f field) { c.SHM.Name, _ = d.name(f, 200) }},
				{"mode", func(f field) { d.shmMode(f, c) }},
				{"group", func(f field) { c.SHM.Group, _ = d.account(f) }},
				{"slots", func(f field) {
					if v, ok := d.integer(f, 1, MaxSHMSlots); ok {
						c.SHM.Slots = int(v)
					}
				}},
			})
		}},
		{"recovery", func(f field) { spill = d.recovery(f, c) }},
		{"metrics", func(f field) {
			d.mapping(f, []entry{{"listen", func(f field) { c.Metrics.Listen, _ = d.hostPort(f, false) }}})
		}},
		{"capture", func(f field) {
			d.mapping(f, []entry{
				{"path", func(f field) { c.Capture.Path, _ = d.capturePath(f) }},
				{"buffer", func(f field) {
					if v, ok := d.byteSize(f, capture.MinBuffer, capture.MaxBuffer); ok {
						c.Capture.Buffer = int(v)
					}
				}},
				{"rotate_size", func(f field) {
					if v, ok := d.byteSize(f, 0, capture.MaxRotate); ok {
						if v != 0 && v < capture.MinRotate {
							d.errorf(f, "%d bytes is below %d (1MiB): 0 never rotates", v, capture.MinRotate)
							return
						}
						c.Capture.RotateSize = v
					}
				}},
			})
		}},
		{"stats_interval", func(f field) {
			if v, ok := d.duration(f); ok {
				// A line a tick: "5ms" for "5s" wrote 200 lines a second,
				// over journald's rate limit, which then drops the
				// handler's other lines too.
				if v < MinStatsInterval {
					d.errorf(f, "%v is below %v: one stats line a tick would flood the log", v, MinStatsInterval)
					return
				}
				c.StatsInterval = v
			}
		}},
		{"log", func(f field) { d.log(f, c) }},
		{"user", func(f field) { c.User, _ = d.account(f) }},
	})
	if top.absent() {
		return c
	}
	// After the whole file: arbitration may come after recovery.
	if spill.node != nil && c.Recovery.Spill < c.Arbitration.MaxPending {
		d.errorf(spill, "%d is smaller than arbitration.max_pending (%d): the spill holds at least what arbitration holds", c.Recovery.Spill, c.Arbitration.MaxPending)
	}
	for _, k := range []string{"feed", "lines"} {
		if !given[k] {
			d.missing(top, k)
		}
	}
	if c.SHM.Name == "" {
		c.SHM.Name = c.Feed.Name
	}
	return c
}

// secondDocument returns the first token of a second document with
// content in tokens, or, when the only document
// with content comes after two or more "---", the last of them with
// emptyFirst set: the parser reads neither. Comments and directives
// (%YAML 1.2) are not content.
func secondDocument(tokens token.Tokens) (tk *token.Token, emptyFirst bool) {
	docs, inDoc, headers := 0, false, 0
	var header *token.Token
	directiveLine := 0
	for _, t := range tokens {
		switch {
		case t.Type == token.DirectiveType:
			directiveLine = t.Position.Line
		case t.Type == token.CommentType || t.Position.Line == directiveLine:
		case t.Type == token.DocumentHeaderType:
			inDoc, header = false, t
			headers++
		case t.Type == token.DocumentEndType:
			inDoc = false
		case !inDoc:
			inDoc = true
			docs++
			if docs == 2 {
				return t, false
			}
			if headers > 1 {
				return header, true
			}
		}
	}
	return nil, false
}

// The parser takes time quadratic in a mapping's keys (goccy/go-yaml#889:
// 40,000 keys, 18 s) and in nesting depth (5,000 brackets, 0.7 s), where
// the lexer is linear: a file beyond these bounds is refused on its
// tokens. feeds/nasdaq.yaml, every key given, has 79 keys, 4 levels.
const (
	maxKeys  = 4096
	maxDepth = 32
)

// tooComplex returns the token past maxKeys or maxDepth and why, or nil.
// Depth is counted as flow collections open ([ {) plus the block
// indicators (- ?) on the token's line: what nests without indenting.
func tooComplex(tokens token.Tokens) (*token.Token, string) {
	keys, flow, line, onLine := 0, 0, 0, 0
	for _, tk := range tokens {
		if tk.Position.Line != line {
			line, onLine = tk.Position.Line, 0
		}
		switch tk.Type {
		case token.MappingValueType:
			if keys++; keys > maxKeys {
				return tk, fmt.Sprintf("more than %d keys (a feed file has about 80): not a feed file", maxKeys)
			}
		case token.SequenceStartType, token.MappingStartType:
			flow++
		case token.SequenceEndType, token.MappingEndType:
			flow = max(flow-1, 0)
		case token.SequenceEntryType, token.MappingKeyType:
			onLine++
		}
		if flow+onLine > maxDepth {
			return tk, fmt.Sprintf("nested more than %d deep (a feed file nests 4): not a feed file", maxDepth)
		}
	}
	return nil, ""
}

func (d *decoder) feed(f field, c *Config) {
	given := d.mapping(f, []entry{
		{"name", func(f field) { c.Feed.Name, _ = d.name(f, 64) }},
		{"protocol", func(f field) {
			s, ok := d.str(f)
			if ok && s != ProtocolITCH50MoldUDP64 {
				d.errorf(f, "%q is not supported (the only protocol is %q)", s, ProtocolITCH50MoldUDP64)
			}
		}},
		{"session", func(f field) {
			s, ok := d.str(f)
			if !ok {
				return
			}
			s = strings.TrimSpace(s)
			switch {
			case !printableASCII(s):
				d.errorf(f, "%q is not printable ASCII", s)
			case len(s) > 10:
				d.errorf(f, "%q is %d characters, a MoldUDP64 session has at most 10", s, len(s))
			default:
				c.Feed.Session = s
			}
		}},
	})
	if !given["name"] {
		d.missing(f, "name")
	}
}

func (d *decoder) lines(f field, c *Config) {
	values, ok := mappingValues(f.node)
	if !ok {
		d.errorf(f, "want a mapping with lines a and b, got %s", describe(f.node))
		return
	}
	var have [2]*Line
	var where [2]*token.Token
	for _, mv := range values {
		k, ktk := keyOf(mv)
		lk := strings.ToLower(k)
		child := d.of(f, f.child(lk), ktk, mv.Value)
		idx := -1
		switch lk {
		case "a":
			idx = 0
		case "b":
			idx = 1
		default:
			at := field{path: f.child(k), key: ktk, alias: f.alias}
			if _, merge := mv.Key.(*ast.MergeKeyNode); merge {
				d.errorf(at, mergeKey)
			} else if !d.oddKey(f, at, k) {
				d.errorf(at, "unknown field (lines are named a and b)")
			}
			continue
		}
		if where[idx] != nil {
			d.errorf(field{path: child.path, key: ktk, alias: f.alias}, "duplicate line name (first at line %d)", where[idx].Position.Line)
			continue
		}
		where[idx] = ktk
		have[idx] = d.line(child, strings.ToUpper(lk))
	}
	if where[0] == nil {
		d.missing(f, "a")
	}
	if have[0] != nil && have[1] != nil {
		a, b := have[0], have[1]
		if a.Interface == b.Interface && a.Group == b.Group && a.Port == b.Port {
			d.add(where[1], f.child("b"), "same interface, group and port as lines.a")
		}
	}
	for _, l := range have {
		if l != nil {
			c.Lines = append(c.Lines, *l)
		}
	}
}

// line decodes one line; nil when it has errors.
func (d *decoder) line(f field, name string) *Line {
	l := &Line{Name: name}
	good := true
	check := func(ok bool) {
		if !ok {
			good = false
		}
	}
	if f.absent() {
		for _, k := range []string{"interface", "group", "port"} {
			d.missing(f, k)
		}
		return nil
	}
	n := len(d.errs)
	given := d.mapping(f, []entry{
		{"interface", func(f field) { var ok bool; l.Interface, ok = d.iface(f); check(ok) }},
		{"group", func(f field) { var ok bool; l.Group, ok = d.multicast(f); check(ok) }},
		{"port", func(f field) { var ok bool; l.Port, ok = d.port(f); check(ok) }},
		{"source", func(f field) { var ok bool; l.Source, ok = d.unicast(f); check(ok) }},
	})
	for _, k := range []string{"interface", "group", "port"} {
		if !given[k] {
			d.missing(f, k)
			good = false
		}
	}
	if !good || len(d.errs) != n {
		return nil
	}
	return l
}

func (d *decoder) receive(f field, c *Config) {
	r := &c.Receive
	setInt := func(dst *int, lo, hi int64) func(field) {
		return func(f field) {
			if v, ok := d.integer(f, lo, hi); ok {
				*dst = int(v)
			}
		}
	}
	setEnum := func(dst *string, allowed ...string) func(field) {
		return func(f field) {
			if v, ok := d.enum(f, allowed...); ok {
				*dst = v
			}
		}
	}
	var zeroCopy, batchSize, ringSize field
	d.mapping(f, []entry{
		{"backend", setEnum(&r.Backend, rx.BackendAuto, rx.BackendXDP, rx.BackendUring, rx.BackendSocket)},
		{"queues", func(f field) {
			if v, ok := d.intList(f, 0, 4095, true); ok {
				r.Queues = v
			}
		}},
		{"zero_copy", func(f field) { zeroCopy = f; setEnum(&r.ZeroCopy, "auto", "on", "off")(f) }},
		{"xdp_mode", setEnum(&r.XDPMode, "auto", "native", "generic")},
		{"busy_poll", func(f field) { r.BusyPoll, _ = d.boolean(f) }},
		{"busy_poll_usec", setInt(&r.BusyPollUsec, 1, 1_000_000)},
		{"busy_poll_budget", setInt(&r.BusyPollBudget, 1, 65535)},
		{"batch_size", func(f field) { batchSize = f; setInt(&r.BatchSize, 1, 4096)(f) }},
		{"ring_size", func(f field) {
			ringSize = f
			v, ok := d.integer(f, 0, 1<<20)
			if ok && v&(v-1) != 0 {
				d.errorf(f, "%d is not a power of two", v)
				return
			}
			r.RingSize = int(v)
		}},
		{"recv_buffer", func(f field) {
			if v, ok := d.byteSize(f, 4096, 1<<31-1); ok {
				r.RecvBuffer = int(v)
			}
		}},
		{"poll_timeout", func(f field) {
			if v, ok := d.duration(f); ok {
				r.PollTimeout = v
			}
		}},
		{"spin", func(f field) {
			if v, ok := d.duration(f); ok {
				r.Spin = v
			}
		}},
		{"verify_checksums", func(f field) { r.VerifyChecksums, _ = d.boolean(f) }},
	})
	if r.ZeroCopy == "on" && (r.Backend == rx.BackendUring || r.Backend == rx.BackendSocket) {
		d.errorf(zeroCopy, "\"on\" needs backend xdp or auto, not %s", r.Backend)
	}
	// What the io_uring backend refuses at open, said here (exit 78, and
	// check's FAIL) rather than at every start. Under auto the ring size
	// is AF_XDP's first: the chain falls back past io_uring instead.
	if r.Backend == rx.BackendUring && r.RingSize&(r.RingSize-1) == 0 {
		switch bufs := rx.UringBuffers(rx.Config{RingSize: r.RingSize}); {
		case bufs > uring.MaxBufRingEntries:
			d.errorf(ringSize, "%d is above the %d buffers an io_uring provided buffer ring holds (backend uring; AF_XDP takes more)", bufs, uring.MaxBufRingEntries)
		case bufs < 2*r.BatchSize && r.RingSize != 0:
			d.errorf(ringSize, "%d is below twice receive.batch_size (%d), the least the io_uring backend takes (backend uring)", bufs, r.BatchSize)
		case bufs < 2*r.BatchSize:
			d.errorf(batchSize, "%d needs a receive.ring_size of at least %d, twice the batch, under backend uring (the default ring size is %d)", r.BatchSize, 2*r.BatchSize, bufs)
		}
	}
}

func (d *decoder) cores(f field, c *Config) {
	var rt field
	given := d.mapping(f, []entry{
		{"receive", func(f field) {
			if v, ok := d.integer(f, 0, 65535); ok {
				c.Cores.Receive = int(v)
			}
		}},
		{"shards", func(f field) {
			v, ok := d.intList(f, 0, 65535, true)
			if ok && len(v) > MaxShards {
				// The handler routes a locate to its shard by a byte.
				d.errorf(f, "%d entries: at most %d shards", len(v), MaxShards)
			} else if ok && len(v) > 0 {
				c.Cores.Shards = v
			}
		}},
		{"rt_priority", func(f field) {
			rt = f
			if v, ok := d.integer(f, 0, MaxRTPriority); ok {
				c.Cores.RTPriority = int(v)
			}
		}},
	})
	// A SCHED_FIFO thread that spins starves whatever else the kernel
	// puts on its CPU: it must own a core named here.
	if c.Cores.RTPriority > 0 && !given["receive"] {
		d.errorf(rt, "needs cores.receive: a real-time thread must be pinned to a core of its own")
	}
}

func (d *decoder) symbols(f field, c *Config) {
	items, ok := d.list(f)
	if !ok {
		return
	}
	first := map[string]int{}
	for _, it := range items {
		s, ok := d.str(it)
		if !ok {
			continue
		}
		switch err := itch.CheckSymbol(s); {
		case err != nil:
			d.errorf(it, "%v", err)
		case first[s] > 0: // lines count from 1
			d.errorf(it, "%q is listed twice (first at line %d)", s, first[s])
		default:
			first[s] = it.line()
			c.Symbols = append(c.Symbols, s)
		}
	}
}

func (d *decoder) arbitration(f field, c *Config) {
	a := &c.Arbitration
	dur := func(dst *time.Duration, lo, hi time.Duration) func(field) {
		return func(f field) {
			if v, ok := d.duration(f); ok {
				if v < lo || v > hi {
					d.errorf(f, "%v is out of range [%v, %v]", v, lo, hi)
					return
				}
				*dst = v
			}
		}
	}
	d.mapping(f, []entry{
		{"grace", dur(&a.Grace, time.Microsecond, time.Second)},
		{"hold", dur(&a.Hold, time.Microsecond, time.Minute)},
		{"line_timeout", dur(&a.LineTimeout, time.Millisecond, time.Hour)},
		{"max_pending", func(f field) {
			if v, ok := d.integer(f, 16, 1<<20); ok {
				a.MaxPending = int(v)
			}
		}},
		{"sequence_restart", func(f field) {
			if v, ok := d.enum(f, SequenceRestartRebuild, SequenceRestartHold); ok {
				a.SequenceRestart = v
			}
		}},
	})
}

func (d *decoder) book(f field, c *Config) {
	b := &c.Book
	d.mapping(f, []entry{
		{"depth", func(f field) {
			if v, ok := d.integer(f, 1, 64); ok {
				b.Depth = int(v)
			}
		}},
		{"max_orders", func(f field) {
			// book.New's limit: above it the start failed, exit status 1
			// (restarted), rather than here.
			if v, ok := d.integer(f, 1, book.MaxOrdersLimit); ok {
				b.MaxOrders = int(v)
			}
		}},
		{"max_locates", func(f field) {
			if v, ok := d.integer(f, 1, 65536); ok {
				b.MaxLocates = int(v)
			}
		}},
	})
}

func (d *decoder) log(f field, c *Config) {
	d.mapping(f, []entry{
		{"level", func(f field) {
			if v, ok := d.enum(f, "trace", "debug", "info", "warn", "error"); ok {
				c.Log.Level = v
			}
		}},
		{"format", func(f field) {
			if v, ok := d.enum(f, "console", "json"); ok {
				c.Log.Format = v
			}
		}},
	})
}

// shmMode decodes shm.mode: octal permission bits such as 0640 (or "0640",
// "0o640"), writable by the owner.
func (d *decoder) shmMode(f field, c *Config) {
	var text string
	switch x := f.node.(type) {
	case *ast.IntegerNode, *ast.StringNode:
		text = strings.TrimSpace(f.tok().Value)
		if sn, ok := x.(*ast.StringNode); ok {
			text = strings.TrimSpace(sn.Value)
		}
	default:
		d.errorf(f, "want an octal mode such as 0640, got %s", describe(f.node))
		return
	}
	digits := strings.TrimPrefix(strings.TrimPrefix(text, "0o"), "0O")
	v, err := strconv.ParseUint(digits, 8, 32)
	switch {
	case err != nil || v > 0o777:
		d.errorf(f, "%q is not an octal permission mode (0000..0777, e.g. 0640)", text)
	case v&0o200 == 0:
		d.errorf(f, "%s: the handler must be able to write its own file (owner write bit 0200)", text)
	case v&0o002 != 0:
		d.errorf(f, "%s: world-writable market data lets any local user forge books", text)
	default:
		c.SHM.Mode = os.FileMode(v)
	}
}

// account decodes a user or group: a name or a numeric id.
func (d *decoder) account(f field) (string, bool) {
	var s string
	switch x := f.node.(type) {
	case *ast.StringNode:
		s = strings.TrimSpace(x.Value)
	case *ast.IntegerNode:
		s = strings.TrimSpace(f.tok().Value)
	default:
		d.errorf(f, "want a name or a numeric id, got %s", describe(f.node))
		return "", false
	}
	if s == "" || len(s) > 32 || !printableASCII(s) || strings.ContainsAny(s, " :/") {
		d.errorf(f, "%q is not a user or group name", s)
		return "", false
	}
	return s, true
}

// capturePath validates capture.path: "" (no capture) or an absolute file
// name, not a directory's (a trailing slash), without control characters.
// A relative one would name a file in the working directory, which is /
// under systemd but the shell's for feedhandler check: check would test
// one directory and the handler write to another.
func (d *decoder) capturePath(f field) (string, bool) {
	s, ok := d.str(f)
	if !ok || s == "" {
		return "", ok
	}
	switch {
	case !printableUTF8(s):
		d.errorf(f, "%q has control characters", s)
		return "", false
	case strings.HasSuffix(s, "/") || strings.HasSuffix(s, "/.") || strings.HasSuffix(s, "/..") || s == "." || s == "..":
		d.errorf(f, "%q names a directory; name a file, such as /var/lib/feedhandler/nasdaq.pcap", s)
		return "", false
	case !filepath.IsAbs(s):
		d.errorf(f, "%q is relative: it would name a file in the working directory, / under systemd but the shell's for feedhandler check; give an absolute path, such as /var/lib/feedhandler/nasdaq.pcap", s)
		return "", false
	}
	return s, true
}

// printableUTF8 reports whether s has no control characters.
func printableUTF8(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

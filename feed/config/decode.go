package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// decoder walks the YAML AST, filling a Config and collecting every problem
// with its position.
type decoder struct {
	file    string
	errs    []*Error
	anchors map[string]ast.Node
	nulls   map[string]*token.Token // path -> key of fields given without a value
	fieldAt map[string]int          // path -> line of each field given, for CheckHost
	offline bool                    // LoadOffline: the snapshot password is not read
	// hostErrs are the errors of errs that are this host's environment's,
	// not the file's (hostErrorf): LoadCheck leaves them to CheckHost
	// when there are no others.
	hostErrs []*Error
}

// field is one value in the document: its dotted path, the token of its key
// (position fallback) and its value node (nil when absent).
type field struct {
	path string
	key  *token.Token
	node ast.Node
	// alias is where the value was given as an alias (*name), for this
	// field or a mapping or list it is in: errors point there, the
	// anchor's line said after, as a field's line is the alias's.
	alias *token.Token
}

// of returns the field at path with value n (an alias resolved), in f.
func (d *decoder) of(f field, path string, key *token.Token, n ast.Node) field {
	c := field{path: path, key: key, node: d.resolve(n), alias: f.alias}
	if a, ok := n.(*ast.AliasNode); ok {
		c.alias = a.GetToken()
	}
	return c
}

// line is the line errors about f's value name.
func (f field) line() int {
	if f.alias != nil {
		return f.alias.Position.Line
	}
	if tk := f.tok(); tk != nil {
		return tk.Position.Line
	}
	return 0
}

func (f field) child(key string) string {
	if f.path == "" {
		return key
	}
	return f.path + "." + key
}

// tok is where errors about the value point.
func (f field) tok() *token.Token {
	if f.node != nil {
		if tk := f.node.GetToken(); tk != nil {
			return tk
		}
	}
	return f.key
}

func (f field) absent() bool {
	if f.node == nil {
		return true
	}
	_, null := f.node.(*ast.NullNode)
	return null
}

func (d *decoder) err() error {
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return join(d.file, errs)
}

func (d *decoder) add(tk *token.Token, path, format string, args ...any) {
	e := &Error{File: d.file, Field: path, Msg: fmt.Sprintf(format, args...)}
	if tk != nil {
		e.Line, e.Column = tk.Position.Line, tk.Position.Column
	}
	d.errs = append(d.errs, e)
}

func (d *decoder) errorf(f field, format string, args ...any) {
	tk := f.tok()
	if f.alias != nil {
		if tk != nil && tk.Position.Line != f.alias.Position.Line {
			format += " (from the anchor at line %d)"
			args = append(args, tk.Position.Line)
		}
		tk = f.alias
	}
	d.add(tk, f.path, format, args...)
}

// hostErrorf is errorf for a problem of this host's environment rather
// than of the file (the snapshot password's variable not set, its file
// unreadable): an error for Load, CheckHost's for LoadCheck.
func (d *decoder) hostErrorf(f field, format string, args ...any) {
	d.errorf(f, format, args...)
	d.hostErrs = append(d.hostErrs, d.errs[len(d.errs)-1])
}

// resolve unwraps anchors (remembering them), aliases and tags.
func (d *decoder) resolve(n ast.Node) ast.Node {
	for range 16 {
		switch x := n.(type) {
		case *ast.AnchorNode:
			if d.anchors == nil {
				d.anchors = make(map[string]ast.Node)
			}
			if x.Name != nil {
				d.anchors[x.Name.GetToken().Value] = x.Value
			}
			n = x.Value
		case *ast.AliasNode:
			if x.Value == nil {
				return nil
			}
			v, ok := d.anchors[x.Value.GetToken().Value]
			if !ok {
				return n // reported as a wrong type by the caller
			}
			n = v
		case *ast.TagNode:
			if x.Start != nil && strTag(x.Start.Value) {
				// The parser keeps 10 in "!!str 10" an IntegerNode
				// (true a BoolNode...): the tag makes it a string.
				switch v := d.resolve(x.Value).(type) {
				case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
					return ast.String(v.GetToken())
				}
			}
			n = x.Value
		default:
			return n
		}
	}
	return n
}

// strTag reports whether tag is YAML's string tag, short or verbatim.
func strTag(tag string) bool {
	return tag == "!!str" || tag == "!<tag:yaml.org,2002:str>"
}

// describe renders a node for "got ..." messages.
func describe(n ast.Node) string {
	switch x := n.(type) {
	case nil, *ast.NullNode:
		return "nothing"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode:
		if p := x.Token.Prev; p != nil && p.Type == token.TagType && strTag(p.Value) {
			return fmt.Sprintf("%q (tagged %s, a string)", x.Value, p.Value)
		}
		if r, ok := oddSpace(x.Value); ok {
			return fmt.Sprintf("%q (it holds %s)", x.Value, oddSpaceHint(r))
		}
		return strconv.Quote(x.Value)
	case *ast.AliasNode:
		return "an unknown alias"
	}
	if tk := n.GetToken(); tk != nil {
		return strconv.Quote(tk.Value)
	}
	return n.Type().String()
}

// entry is one known key of a mapping and what to do with its value.
type entry struct {
	key string
	fn  func(field)
}

// mapping walks the mapping at f, calling the entry of each key in document
// order and reporting unknown and duplicate keys. Absent (null) values are
// skipped. It returns the keys that were given.
func (d *decoder) mapping(f field, entries []entry) map[string]bool {
	given := map[string]bool{}
	if f.absent() {
		return given
	}
	values, ok := mappingValues(f.node)
	if !ok {
		d.errorf(f, "want a mapping, got %s", describe(f.node))
		return given
	}
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.key
	}
	firstLine := map[string]int{}
	for _, mv := range values {
		k, ktk := keyOf(mv)
		child := d.of(f, f.child(k), ktk, mv.Value)
		at := field{path: child.path, key: ktk, alias: f.alias} // errors about the key
		if l, dup := firstLine[k]; dup {
			d.errorf(at, "duplicate field (first at line %d)", l)
			continue
		}
		firstLine[k] = at.line()
		var e *entry
		for i := range entries {
			if entries[i].key == k {
				e = &entries[i]
				break
			}
		}
		if _, merge := mv.Key.(*ast.MergeKeyNode); merge && e == nil {
			d.errorf(at, mergeKey)
			continue
		}
		if e == nil {
			if d.oddKey(f, at, k) {
				continue
			}
			if s := suggest(k, keys); s != "" {
				d.errorf(at, "unknown field (did you mean %q?)", s)
			} else {
				d.errorf(at, "unknown field (want one of %s)", strings.Join(keys, ", "))
			}
			continue
		}
		if child.absent() {
			if d.nulls == nil {
				d.nulls = make(map[string]*token.Token)
			}
			d.nulls[child.path] = ktk
			continue
		}
		given[k] = true
		if d.fieldAt == nil {
			d.fieldAt = make(map[string]int)
		}
		if l := child.line(); l > 0 {
			d.fieldAt[child.path] = l
		}
		e.fn(child)
	}
	return given
}

// mergeKey is the error for a YAML merge key (<<: *name), which the
// decoder does not expand: it read as an unknown field named "<<".
const mergeKey = "merge keys (<<) are not supported: write the keys out (an alias can give a whole value or section)"

func mappingValues(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch x := n.(type) {
	case *ast.MappingNode:
		return x.Values, true
	case *ast.MappingValueNode: // a one-key mapping may come back bare
		return []*ast.MappingValueNode{x}, true
	}
	return nil, false
}

func keyOf(mv *ast.MappingValueNode) (string, *token.Token) {
	tk := mv.Key.GetToken()
	if s, ok := mv.Key.(*ast.StringNode); ok {
		return s.Value, tk
	}
	return tk.Value, tk
}

// missing reports a required key that is not in the mapping at f.
// It points at the key when the field is there without a value, else at
// the mapping's own key.
func (d *decoder) missing(f field, key string) {
	tk := f.key
	if f.path == "" {
		tk = nil
	}
	if k, ok := d.nulls[f.child(key)]; ok {
		tk = k
	}
	d.add(tk, f.child(key), "missing required field")
}

// --- scalars ---

func (d *decoder) str(f field) (string, bool) {
	switch x := f.node.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return x.GetToken().Value, true
	case *ast.LiteralNode:
		return x.Value.Value, true
	}
	if n, ok := f.node.(*ast.NullNode); ok && n.GetToken() != nil && n.GetToken().Value != "" {
		// null, Null, NULL and ~ are YAML's null, not the word.
		d.errorf(f, "want a string, got YAML's null (%s); quote it, %q, if that is the value", n.GetToken().Value, n.GetToken().Value)
		return "", false
	}
	d.errorf(f, "want a string, got %s", describe(f.node))
	return "", false
}

func (d *decoder) integer(f field, lo, hi int64) (int64, bool) {
	if tk := f.tok(); tk != nil && leadingZero(tk) {
		d.errorf(f, "%s has a leading zero, which YAML reads as octal (0o...): write it without the zero", tk.Value)
		return 0, false
	}
	x, ok := f.node.(*ast.IntegerNode)
	if !ok {
		d.errorf(f, "want an integer in %d..%d, got %s", lo, hi, describe(f.node))
		return 0, false
	}
	var v int64
	switch n := x.Value.(type) {
	case int64:
		v = n
	case uint64:
		if n > uint64(hi) {
			d.errorf(f, "%s is out of range (%d..%d)", x.Token.Value, lo, hi)
			return 0, false
		}
		v = int64(n)
	}
	if v < lo || v > hi {
		d.errorf(f, "%s is out of range (%d..%d)", x.Token.Value, lo, hi)
		return 0, false
	}
	return v, true
}

// leadingZero reports whether tk is a plain (unquoted) number written with
// a leading zero, such as 026477: the parser reads it as octal (11583),
// or, with an 8 or 9 in it, as a string.
func leadingZero(tk *token.Token) bool {
	if tk.Type != token.IntegerType && tk.Type != token.OctetIntegerType && tk.Type != token.StringType {
		return false
	}
	v := strings.TrimLeft(tk.Value, "+-")
	if len(v) < 2 || v[0] != '0' {
		return false
	}
	for i := 1; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

func (d *decoder) boolean(f field) (bool, bool) {
	if x, ok := f.node.(*ast.BoolNode); ok {
		return x.Value, true
	}
	d.errorf(f, "want true or false, got %s", describe(f.node))
	return false, false
}

func (d *decoder) duration(f field) (time.Duration, bool) {
	s, ok := d.str(f)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil && durationSyntax.MatchString(s) {
		// ParseDuration says "invalid duration" of one past its range too.
		d.errorf(f, "%q is out of range (at most %v)", s, time.Duration(math.MaxInt64))
		return 0, false
	}
	if err != nil {
		d.errorf(f, "%q is not a duration (like 500ms, 5s, 1m)", s)
		return 0, false
	}
	if v <= 0 {
		d.errorf(f, "%q must be positive", s)
		return 0, false
	}
	return v, true
}

// durationSyntax matches what time.ParseDuration reads, whatever the size.
var durationSyntax = regexp.MustCompile(`^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)

func (d *decoder) enum(f field, allowed ...string) (string, bool) {
	s, ok := d.str(f)
	if !ok {
		return "", false
	}
	for _, a := range allowed {
		if s == a {
			return s, true
		}
	}
	if g := suggest(s, allowed); g != "" {
		d.errorf(f, "%q is not one of %s (did you mean %q?)", s, strings.Join(allowed, ", "), g)
	} else {
		d.errorf(f, "%q is not one of %s", s, strings.Join(allowed, ", "))
	}
	return "", false
}

// list returns the elements of the sequence at f as fields path[i].
func (d *decoder) list(f field) ([]field, bool) {
	x, ok := f.node.(*ast.SequenceNode)
	if !ok {
		d.errorf(f, "want a list, got %s", describe(f.node))
		return nil, false
	}
	out := make([]field, len(x.Values))
	for i, n := range x.Values {
		out[i] = d.of(f, fmt.Sprintf("%s[%d]", f.path, i), f.tok(), n)
	}
	return out, true
}

// intList decodes a list of distinct integers in lo..hi.
func (d *decoder) intList(f field, lo, hi int64, distinct bool) ([]int, bool) {
	items, ok := d.list(f)
	if !ok {
		return nil, false
	}
	out := make([]int, 0, len(items))
	seen := map[int64]int{}
	good := true
	for _, it := range items {
		v, ok := d.integer(it, lo, hi)
		if !ok {
			good = false
			continue
		}
		if l, dup := seen[v]; dup && distinct {
			d.errorf(it, "%d is listed twice (first at line %d)", v, l)
			good = false
			continue
		}
		seen[v] = it.line()
		out = append(out, int(v))
	}
	return out, good
}

// --- domain values ---

func validName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (d *decoder) name(f field, limit int) (string, bool) {
	s, ok := d.str(f)
	if !ok {
		return "", false
	}
	if !validName(s) {
		d.errorf(f, "%q is not a valid name (only A-Z a-z 0-9 . _ -, not empty, not . or ..)", s)
		return "", false
	}
	if len(s) > limit {
		d.errorf(f, "%q is %d characters, the limit is %d", s, len(s), limit)
		return "", false
	}
	return s, true
}

func (d *decoder) multicast(f field) (netip.Addr, bool) {
	s, ok := d.str(f)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() || !a.IsMulticast() {
		d.errorf(f, "%q is not an IPv4 multicast address", s)
		return netip.Addr{}, false
	}
	if a.IsLinkLocalMulticast() {
		d.errorf(f, "%q is in 224.0.0.0/24, the local network control block (routing protocols), not a feed group", s)
		return netip.Addr{}, false
	}
	return a, true
}

func (d *decoder) unicast(f field) (netip.Addr, bool) {
	s, ok := d.str(f)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() || a.IsMulticast() || a.IsUnspecified() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		d.errorf(f, "%q is not an IPv4 unicast address", s)
		return netip.Addr{}, false
	}
	return a, true
}

func (d *decoder) port(f field) (uint16, bool) {
	v, ok := d.integer(f, 1, 65535)
	return uint16(v), ok
}

func (d *decoder) iface(f field) (string, bool) {
	s, ok := d.str(f)
	if !ok {
		return "", false
	}
	// Linux: IFNAMSIZ-1 bytes, no '/', ':' or whitespace, not "." or "..".
	if s == "" || s == "." || s == ".." || len(s) > 15 || strings.ContainsAny(s, "/: \t\n") {
		d.errorf(f, "%q is not a valid interface name", s)
		return "", false
	}
	return s, true
}

// hostPort validates "host:port"; needHost rejects an empty host.
func (d *decoder) hostPort(f field, needHost bool) (string, bool) {
	s, ok := d.str(f)
	if !ok {
		return "", false
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		d.errorf(f, "%q is not host:port", s)
		return "", false
	}
	if needHost && host == "" {
		d.errorf(f, "%q has no host", s)
		return "", false
	}
	p, err := strconv.ParseUint(port, 10, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		d.errorf(f, "%q: port %q is not a number in 1..65535", s, port)
		return "", false
	}
	if err != nil || p == 0 || p > 65535 {
		d.errorf(f, "%q: port %s is out of range (1..65535)", s, port)
		return "", false
	}
	return s, true
}

// byteSize accepts an integer number of bytes or a string with a binary
// suffix: "512KiB", "8MiB", "1GiB" (K, M, G are accepted as the same).
func (d *decoder) byteSize(f field, lo, hi int64) (int64, bool) {
	if _, isInt := f.node.(*ast.IntegerNode); isInt {
		return d.integer(f, lo, hi)
	}
	s, ok := d.str(f)
	if !ok {
		return 0, false
	}
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > hi/mult {
		if err == nil {
			d.errorf(f, "%q is out of range (%d..%d bytes)", s, lo, hi)
		} else {
			d.errorf(f, "%q is not a size (bytes, or a number with KiB, MiB, GiB)", s)
		}
		return 0, false
	}
	if n*mult < lo {
		d.errorf(f, "%q is out of range (%d..%d bytes)", s, lo, hi)
		return 0, false
	}
	return n * mult, true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// oddSpace returns the first rune of s that looks like a space, or like
// nothing, and is not one of YAML's (U+0020, the tab): a no-break space
// (U+00A0) or another Unicode space, or an invisible format character
// (U+200B, U+FEFF), as text pasted from a web page, a wiki or a chat
// carries. YAML reads it as part of a name or value.
func oddSpace(s string) (rune, bool) {
	for _, r := range s {
		if isOddSpace(r) {
			return r, true
		}
	}
	return 0, false
}

func isOddSpace(r rune) bool {
	return r > unicode.MaxASCII && (unicode.IsSpace(r) || unicode.Is(unicode.Cf, r))
}

// oddKey reports the unknown key k at (in f) when it holds an oddSpace,
// with k quoted in its path: printed bare, "\u00a0   port" read as an
// indented known key.
func (d *decoder) oddKey(f, at field, k string) bool {
	r, ok := oddSpace(k)
	if ok {
		at.path = f.child(strconv.Quote(k))
		d.errorf(at, "unknown field: its name holds %s", oddSpaceHint(r))
	}
	return ok
}

// oddSpaceHint says what r (oddSpace's) is and what to do.
func oddSpaceHint(r rune) string {
	what := "a Unicode space"
	switch {
	case r == '\u00a0':
		what = "a no-break space"
	case unicode.Is(unicode.Cf, r):
		what = "an invisible character"
	}
	return fmt.Sprintf("%U (%s, as pasted text has): YAML indents and separates with ASCII spaces only; retype them", r, what)
}

// oddSpaceOnLine returns the first oddSpace rune on line n of data (lines
// counted as lineOf counts them).
func oddSpaceOnLine(data []byte, n int) (rune, bool) {
	line := 1
	for i := 0; i < len(data) && line <= n; {
		r, size := utf8.DecodeRune(data[i:])
		if line == n && isOddSpace(r) {
			return r, true
		}
		if lineBreak(data, i) {
			line++
		}
		i += size
	}
	return 0, false
}

package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// probeKey is a key no mapping of the feed file accepts or resembles, so
// that the decoder's "unknown field (want one of ...)" lists the mapping's
// keys.
const probeKey = "zzqxjvwkzzqxjvwk"

// probeYAML is a feed file holding, at the dotted path, a mapping with
// probeKey in it.
func probeYAML(path []string) string {
	var b strings.Builder
	for i, k := range path {
		b.WriteString(strings.Repeat("  ", i) + k + ":\n")
	}
	b.WriteString(strings.Repeat("  ", len(path)) + probeKey + ": 1\n")
	return b.String()
}

// acceptedKeys returns every key path the decoder accepts, found by asking
// each mapping for a key it does not know: its error names the ones it does.
func acceptedKeys(t *testing.T) []string {
	t.Helper()
	// The snapshot section reads its password from here.
	t.Setenv("FEEDHANDLER_GLIMPSE_PASSWORD", "pw")
	var keys []string
	var walk func(path []string, depth int)
	walk = func(path []string, depth int) {
		if depth > 5 {
			t.Fatalf("%s: nested too deep", strings.Join(path, "."))
		}
		_, err := Parse("probe.yaml", []byte(probeYAML(path)))
		want := strings.Join(append(slices.Clone(path), probeKey), ".")
		var children []string
		for _, e := range flatten(err) {
			var ce *Error
			if !errors.As(e, &ce) || ce.Field != want {
				continue
			}
			switch {
			case strings.HasPrefix(ce.Msg, "unknown field (want one of "):
				list := strings.TrimSuffix(strings.TrimPrefix(ce.Msg, "unknown field (want one of "), ")")
				children = strings.Split(list, ", ")
			case ce.Msg == "unknown field (lines are named a and b)":
				children = []string{"a", "b"}
			default:
				t.Fatalf("probe of %s: %q", want, ce.Msg)
			}
		}
		if children == nil {
			// Not a mapping: a leaf.
			keys = append(keys, strings.Join(path, "."))
			return
		}
		for _, c := range children {
			walk(append(slices.Clone(path), c), depth+1)
		}
	}
	walk(nil, 0)
	slices.Sort(keys)
	return keys
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// keyLine is a key of feeds/nasdaq.yaml, given or commented out
// ("  # spin: 1ms"): its indentation, whether commented, key and comment.
var keyLine = regexp.MustCompile(`^( *)(# ?)?([a-z][a-z_]*):(?:\s|$)(.*)$`)

// alternative is a key named as another way to give its neighbour
// ("password_env: X # or password_file: /path").
var alternative = regexp.MustCompile(`#.*\bor ([a-z][a-z_]*):`)

// documentedKeys returns the key paths feeds/nasdaq.yaml shows, given or
// commented out.
func documentedKeys(t *testing.T, text string) []string {
	t.Helper()
	type level struct {
		indent int
		key    string
	}
	var stack []level
	seen := map[string]bool{}
	var keys []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			keys = append(keys, p)
		}
	}
	for _, l := range strings.Split(text, "\n") {
		m := keyLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		indent, commented, key := len(m[1]), m[2] != "", m[3]
		// A commented key sits where the key would; the comment column
		// (beside the values) holds prose.
		if commented && len(stack) > 0 && indent > stack[len(stack)-1].indent+2 {
			continue
		}
		if commented && len(stack) == 0 && indent > 0 {
			continue
		}
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		var parts []string
		for _, s := range stack {
			parts = append(parts, s.key)
		}
		parent := strings.Join(parts, ".")
		path := strings.Join(append(parts, key), ".")
		add(path)
		if a := alternative.FindStringSubmatch(l); a != nil {
			if parent != "" {
				add(parent + "." + a[1])
			} else {
				add(a[1])
			}
		}
		stack = append(stack, level{indent, key})
	}
	// A section is documented by its keys.
	var leaves []string
	for _, k := range keys {
		leaf := true
		for _, o := range keys {
			if strings.HasPrefix(o, k+".") {
				leaf = false
				break
			}
		}
		if leaf {
			leaves = append(leaves, k)
		}
	}
	slices.Sort(leaves)
	return leaves
}

// feeds/nasdaq.yaml says "Every key is shown": every key the decoder
// accepts is there (given or commented out), and every key shown is one the
// decoder accepts.
func TestNasdaqYAMLShowsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../feeds/nasdaq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "Every key is shown") {
		t.Fatal("feeds/nasdaq.yaml no longer says it shows every key: update this test")
	}
	code := acceptedKeys(t)
	doc := documentedKeys(t, string(data))
	if len(code) < 40 || len(doc) < 40 {
		t.Fatalf("found %d keys in the decoder, %d in feeds/nasdaq.yaml: the probe or the parse broke\ncode: %v\ndoc: %v", len(code), len(doc), code, doc)
	}
	// recovery.server is accepted only to say what replaced it.
	retired := map[string]bool{"recovery.server": true, "recovery.snapshot.password": true}
	for _, k := range code {
		if !retired[k] && !slices.Contains(doc, k) {
			t.Errorf("the decoder accepts %s, feeds/nasdaq.yaml does not show it", k)
		}
	}
	for _, k := range doc {
		if !slices.Contains(code, k) {
			t.Errorf("feeds/nasdaq.yaml shows %s, the decoder does not accept it", k)
		}
	}
}

// The yaml blocks of README.md and docs/*.md are parts of feed files: each
// one parses, apart from the sections it leaves out.
func TestDocYAMLBlocksParse(t *testing.T) {
	t.Setenv("FEEDHANDLER_GLIMPSE_PASSWORD", "pw")
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("docs: %v %v", docs, err)
	}
	blocks := 0
	for _, f := range append(docs, "../../README.md") {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rest := string(data)
		for {
			_, after, ok := strings.Cut(rest, "```yaml\n")
			if !ok {
				break
			}
			block, tail, _ := strings.Cut(after, "```")
			rest = tail
			blocks++
			_, err := Parse(f, []byte(block))
			for _, e := range flatten(err) {
				var ce *Error
				if errors.As(e, &ce) && ce.Line == 0 && strings.HasPrefix(ce.Msg, "missing") {
					continue // a section the block leaves out
				}
				t.Errorf("%s: yaml block:\n%s\n%v", f, block, e)
			}
		}
	}
	if blocks == 0 {
		t.Fatal("no yaml blocks found")
	}
}

// keyComments returns the comment of each key of feeds/nasdaq.yaml, given
// or commented out, with its continuation lines, joined by spaces.
func keyComments(text string) map[string]string {
	type level struct {
		indent int
		key    string
	}
	var stack []level
	out := map[string]string{}
	cur := ""
	for _, l := range strings.Split(text, "\n") {
		if m := keyLine.FindStringSubmatch(l); m != nil {
			indent, commented, key := len(m[1]), m[2] != "", m[3]
			prose := commented && (len(stack) > 0 && indent > stack[len(stack)-1].indent+2 || len(stack) == 0 && indent > 0)
			if !prose {
				for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
					stack = stack[:len(stack)-1]
				}
				var parts []string
				for _, s := range stack {
					parts = append(parts, s.key)
				}
				cur = strings.Join(append(parts, key), ".")
				stack = append(stack, level{indent, key})
				if _, c, ok := strings.Cut(m[4], "#"); ok {
					out[cur] = strings.TrimSpace(c)
				} else {
					out[cur] = ""
				}
				continue
			}
		}
		t := strings.TrimSpace(l)
		if cur != "" && strings.HasPrefix(t, "#") && strings.Index(l, "#") > 8 {
			out[cur] += " " + strings.TrimSpace(strings.TrimPrefix(t, "#"))
		}
	}
	return out
}

var (
	numericDefault = regexp.MustCompile(`\bdefault:? ([0-9][0-9A-Za-z.]*|true|false)\b`)
	wordDefault    = regexp.MustCompile(`(?:^|: |\| )([a-z]+) \(default\b`)
)

// Each default feeds/nasdaq.yaml notes beside a key is the decoder's: a
// file giving the key that value parses to the same Config as one leaving
// it out.
func TestNasdaqYAMLDefaults(t *testing.T) {
	data, err := os.ReadFile("../../feeds/nasdaq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const base = "feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 1\n"
	want, err := Parse("t.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	want.fieldAt = nil
	checked := 0
	for key, comment := range keyComments(string(data)) {
		var v string
		if m := numericDefault.FindStringSubmatch(comment); m != nil {
			v = strings.TrimSuffix(m[1], ".")
		} else if m := wordDefault.FindStringSubmatch(comment); m != nil {
			v = m[1]
		} else {
			continue
		}
		parts := strings.Split(key, ".")
		if parts[0] == "feed" || parts[0] == "lines" {
			continue // in base
		}
		var b strings.Builder
		b.WriteString(base)
		for i, p := range parts {
			b.WriteString(strings.Repeat("  ", i) + p + ":")
			if i < len(parts)-1 {
				b.WriteString("\n")
			}
		}
		b.WriteString(" " + v + "\n")
		got, err := Parse("t.yaml", []byte(b.String()))
		checked++
		if err != nil {
			t.Errorf("feeds/nasdaq.yaml: %s (default %s): %v", key, v, err)
			continue
		}
		got.fieldAt = nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("feeds/nasdaq.yaml says %s defaults to %s; the decoder's default differs:\n with it: %+v\nwithout: %+v", key, v, got, want)
		}
	}
	if checked < 25 {
		t.Errorf("checked %d defaults of feeds/nasdaq.yaml: the parse of its comments broke", checked)
	}
}

var intRange = regexp.MustCompile(`\b(\d+)\.\.(\d+)\b`)

// Each integer range feeds/nasdaq.yaml notes beside a key ("1..4096") is
// the decoder's: both ends are accepted, the numbers past them refused
// (below the low end only when that is not the default, as cores.rt_priority's
// 0 is).
func TestNasdaqYAMLRanges(t *testing.T) {
	data, err := os.ReadFile("../../feeds/nasdaq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const base = "feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 1\n"
	file := func(key string, v int64) string {
		if key == "cores.rt_priority" {
			return base + fmt.Sprintf("cores:\n  receive: 0\n  rt_priority: %d\n", v)
		}
		var b strings.Builder
		b.WriteString(base)
		parts := strings.Split(key, ".")
		for i, p := range parts {
			b.WriteString(strings.Repeat("  ", i) + p + ":")
			if i < len(parts)-1 {
				b.WriteString("\n")
			}
		}
		fmt.Fprintf(&b, " %d\n", v)
		return b.String()
	}
	checked := 0
	for key, comment := range keyComments(string(data)) {
		m := intRange.FindStringSubmatch(comment)
		if m == nil || strings.HasPrefix(key, "feed.") || strings.HasPrefix(key, "lines.") {
			continue
		}
		if strings.Contains(comment, m[0]+" characters") {
			continue // a string's length
		}
		lo, _ := strconv.ParseInt(m[1], 10, 64)
		hi, _ := strconv.ParseInt(m[2], 10, 64)
		def := ""
		if d := numericDefault.FindStringSubmatch(comment); d != nil {
			def = d[1]
		}
		checked++
		for _, c := range []struct {
			v  int64
			ok bool
		}{{lo, true}, {hi, true}, {hi + 1, false}, {lo - 1, false}} {
			if !c.ok && c.v == lo-1 && def == strconv.FormatInt(lo-1, 10) {
				continue
			}
			_, err := Parse("t.yaml", []byte(file(key, c.v)))
			if c.ok && err != nil {
				t.Errorf("feeds/nasdaq.yaml gives %s the range %s; %d is refused: %v", key, m[0], c.v, err)
			}
			if !c.ok && err == nil {
				t.Errorf("feeds/nasdaq.yaml gives %s the range %s; %d is accepted", key, m[0], c.v)
			}
		}
	}
	if checked < 8 {
		t.Errorf("checked %d ranges of feeds/nasdaq.yaml: the parse of its comments broke", checked)
	}
}

var durationRange = regexp.MustCompile(`\b(\d+(?:ns|us|µs|ms|s|m|h))\.\.(\d+(?:ns|us|µs|ms|s|m|h))\b`)

// Each duration range feeds/nasdaq.yaml notes beside a key ("1s..10m") is
// the decoder's: both ends are accepted, a nanosecond past either refused.
// retry and retry_max are given with the other at the end that lets the
// range be seen (retry_max is not below retry).
func TestNasdaqYAMLDurationRanges(t *testing.T) {
	t.Setenv("FEEDHANDLER_GLIMPSE_PASSWORD", "pw")
	data, err := os.ReadFile("../../feeds/nasdaq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const base = "feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 1\n"
	companion := map[string]string{
		"recovery.snapshot.retry":            "retry_max: 1h",
		"recovery.snapshot.retry_max":        "retry: 1s",
		"recovery.rerequest.server_rest":     "server_rest_max: 1h",
		"recovery.rerequest.server_rest_max": "server_rest: 100ms",
	}
	file := func(key string, v time.Duration) string {
		var b strings.Builder
		b.WriteString(base)
		parts := strings.Split(key, ".")
		for i, p := range parts {
			b.WriteString(strings.Repeat("  ", i) + p + ":")
			if i < len(parts)-1 {
				b.WriteString("\n")
			}
		}
		fmt.Fprintf(&b, " %s\n", v)
		if c, ok := companion[key]; ok {
			b.WriteString(strings.Repeat("  ", len(parts)-1) + c + "\n")
		}
		return b.String()
	}
	checked := 0
	for key, comment := range keyComments(string(data)) {
		m := durationRange.FindStringSubmatch(comment)
		if m == nil {
			continue
		}
		lo, err1 := time.ParseDuration(m[1])
		hi, err2 := time.ParseDuration(m[2])
		if err1 != nil || err2 != nil {
			t.Errorf("feeds/nasdaq.yaml: %s: range %s: %v %v", key, m[0], err1, err2)
			continue
		}
		checked++
		for _, c := range []struct {
			v  time.Duration
			ok bool
		}{{lo, true}, {hi, true}, {hi + 1, false}, {lo - 1, false}} {
			_, err := Parse("t.yaml", []byte(file(key, c.v)))
			if c.ok && err != nil {
				t.Errorf("feeds/nasdaq.yaml gives %s the range %s; %s is refused: %v", key, m[0], c.v, err)
			}
			if !c.ok && err == nil {
				t.Errorf("feeds/nasdaq.yaml gives %s the range %s; %s is accepted", key, m[0], c.v)
			}
		}
	}
	if checked < 3 {
		t.Errorf("checked %d duration ranges of feeds/nasdaq.yaml: the parse of its comments broke", checked)
	}
}

// TestDocsNameKnownKeys: a dotted key the README, docs/*.md and deploy/
// name in a code span (`receive.busy_poll`, `recovery.snapshot.retry: 5s`,
// `lines.a`) is one the decoder accepts, or a section of such keys.
// TestDocYAMLBlocksParse checks the docs' YAML blocks and
// TestNasdaqYAMLShowsEveryKey feeds/nasdaq.yaml; the prose, where most keys
// are named (OPERATIONS.md and TUNING.md tell what to set), was checked by
// nothing, so a renamed key stayed in it.
func TestDocsNameKnownKeys(t *testing.T) {
	known := map[string]bool{}
	sections := map[string]bool{}
	for _, k := range acceptedKeys(t) {
		parts := strings.Split(k, ".")
		for i := 1; i <= len(parts); i++ {
			known[strings.Join(parts[:i], ".")] = true
		}
		sections[parts[0]] = true
	}
	// Named in the docs on purpose, and not keys.
	notKeys := map[string]string{
		"recovery.server": "an earlier version's key, which RECOVERY.md says is rejected",
		"book.prepare":    "a function of package book",
	}
	span := regexp.MustCompile("`([a-z_]+(?:\\.[a-z_]+)+)(?:[`:= ])")
	files := []string{"../../README.md"}
	for _, pat := range []string{"../../docs/*.md", "../../deploy/*"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range span.FindAllStringSubmatch(string(b), -1) {
			key := m[1]
			if !sections[strings.Split(key, ".")[0]] || notKeys[key] != "" {
				continue
			}
			checked++
			if !known[key] {
				t.Errorf("%s names the key %s, which the feed file does not take", strings.TrimPrefix(f, "../../"), key)
			}
		}
	}
	t.Logf("%d keys named", checked)
	if checked < 50 {
		t.Errorf("only %d keys found in the docs: the pattern no longer matches them", checked)
	}
}

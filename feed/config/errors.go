package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every *Error.
var ErrInvalid = errors.New("invalid feed config")

// Error is one problem in a feed file.
type Error struct {
	File   string // as given to Load or Parse
	Line   int    // 1-based; 0 when the problem has no position (a missing section)
	Column int    // 1-based; 0 when unknown
	Field  string // dotted path such as "lines.a.group"; "" for YAML syntax errors
	Msg    string
}

// Error formats "file:line: field: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// maxErrors is how many problems an error from Parse, Load or CheckHost
// names: a list of 50,000 duplicate symbols printed 3.3 MB of "listed
// twice" lines. The rest are counted in one more *Error.
const maxErrors = 100

// join returns errs: nil, the one, or the first maxErrors joined (in the
// order found) with "file: ... and N more problems" after them.
func join(file string, errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	if more := len(errs) - maxErrors; more > 0 {
		errs = append(errs[:maxErrors:maxErrors], &Error{File: file, Msg: fmt.Sprintf("... and %d more problems", more)})
	}
	return errors.Join(errs...)
}

// Suggest returns the candidate closest to s when it is close enough to be
// a likely typo, else "": the decoder's "did you mean", for the names a
// command takes too.
func Suggest(s string, candidates []string) string { return suggest(s, candidates) }

// suggest returns the candidate closest to s when it is close enough to be a
// likely typo, else "".
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	ls := strings.ToLower(s)
	for _, c := range candidates {
		d := editDistance(ls, c)
		if d < bestD && d < max(len(c), len(s)) {
			best, bestD = c, d
		}
	}
	if bestD > max(1, len(s)/3) && !(bestD <= 2 && len(s) >= 4) {
		return ""
	}
	return best
}

// editDistance is the Damerau-Levenshtein (optimal string alignment)
// distance between a and b.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// FieldError is a problem with field's value (a dotted path, "metrics.listen")
// that only a later step found, as an *Error at the field's line in
// c.File, so that it reads and exits as Parse's and CheckHost's do.
func (c *Config) FieldError(field, format string, args ...any) error {
	return &Error{File: c.File, Line: c.fieldAt[field], Field: field, Msg: fmt.Sprintf(format, args...)}
}

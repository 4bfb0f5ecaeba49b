package config

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error is a *Error
// naming the file and a line in it (none only for a missing key or
// section, or an empty file) and wraps ErrInvalid, and that an accepted
// config satisfies the documented invariants.
func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	for _, p := range []string{"../../feeds/nasdaq.yaml", "../../feeds/demo.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err != nil {
			if c != nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("bad error result: %v", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.yaml") {
					t.Fatalf("error line without file name: %q", line)
				}
			}
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			lines := 1 + bytes.Count(data, []byte("\n"))
			for _, e := range errs {
				var ce *Error
				if !errors.As(e, &ce) {
					t.Fatalf("error %T %v is not a *config.Error", e, e)
				}
				// Only a key or section that is missing, or a file of
				// nothing, has no line.
				if ce.Line > lines || ce.Line < 0 || ce.Line == 0 && ce.Field == "" && ce.Msg != "empty feed file" && !strings.HasPrefix(ce.Msg, "... and ") {
					t.Fatalf("error at line %d of %d: %v", ce.Line, lines, ce)
				}
			}
			return
		}
		if len(c.Lines) == 0 || c.Lines[0].Name != "A" || len(c.Lines) > 2 {
			t.Fatalf("lines %+v", c.Lines)
		}
		for _, l := range c.Lines {
			if !l.Group.Is4() || !l.Group.IsMulticast() || l.Port == 0 || l.Interface == "" {
				t.Fatalf("line %+v", l)
			}
		}
		if c.Feed.Name == "" || !validName(c.SHM.Name) || len(c.Feed.Session) > 10 {
			t.Fatalf("feed %+v shm %+v", c.Feed, c.SHM)
		}
		if c.Book.Depth < 1 || c.Book.Depth > 64 || c.ShardCount() < 1 || c.StatsInterval <= 0 {
			t.Fatalf("config %+v", c)
		}
	})
}

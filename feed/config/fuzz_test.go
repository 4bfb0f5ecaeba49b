package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error names the file
// and wraps ErrInvalid, and that an accepted config satisfies the documented
// invariants.
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

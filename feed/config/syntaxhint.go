package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// A key and its value on one line, without the ": " between them that
// makes a mapping entry ("port:26477", "port 26477").
var (
	keyWithoutSpace = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*):([^\s:].*)$`)
	keyWithoutColon = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s+([^\s:#][^:]*)$`)
)

// syntaxHint says what a YAML syntax error at line n (1-based) most
// likely is where the parser's words do not ("non-map value is
// specified", "mapping value is not allowed in this context"): a key
// written without the colon or the space after it, or a line indented
// out of line with the keys above it. "" when it finds neither.
func syntaxHint(data []byte, n int, msg string) string {
	if !strings.Contains(msg, "non-map value") && !strings.Contains(msg, "value is not allowed in this context") {
		return ""
	}
	text := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data))
	lines := strings.Split(text, "\n")
	if n >= 1 && n <= len(lines) {
		entry := strings.TrimSpace(uncommented(lines[n-1]))
		if m := keyWithoutSpace.FindStringSubmatch(entry); m != nil {
			return fmt.Sprintf("%q: a key's colon needs a space after it, %q", entry, m[1]+": "+m[2])
		}
		if m := keyWithoutColon.FindStringSubmatch(entry); m != nil {
			return fmt.Sprintf("%q: a key needs a colon and a space, %q", entry, m[1]+": "+strings.TrimSpace(m[2]))
		}
	}
	if at, indent, above := misindented(lines, n); at > 0 {
		return fmt.Sprintf("line %d, %q, is indented %d space(s), where the keys above it are at %s: YAML nests by indentation, so line a key up with the others of its section",
			at, strings.TrimSpace(uncommented(lines[at-1])), indent, joinOr(above))
	}
	return ""
}

// misindented finds, among the lines n-1 to n+1, the first whose
// indentation lines up with none of the keys open above it (or goes
// deeper under a line that opens nothing), walking the file from its
// start as block YAML nests. It returns that line, its indentation and
// the indentations it could have had; 0 when there is none, or when an
// earlier line is already out of line (the walk then knows nothing).
func misindented(lines []string, n int) (at, indent int, above []int) {
	open := []int{0} // indentations of the enclosing keys, innermost last
	opens := false   // the line before ends in ':', so this one may go deeper
	for i := 0; i < len(lines) && i < n+1; i++ {
		entry := strings.TrimRight(uncommented(lines[i]), " ")
		body := strings.TrimLeft(entry, " ")
		if body == "" || body == "---" {
			continue
		}
		indent = len(entry) - len(body)
		top := open[len(open)-1]
		switch {
		case opens && indent > top:
			open = append(open, indent)
		default:
			before := append([]int(nil), open...)
			for len(open) > 1 && open[len(open)-1] > indent {
				open = open[:len(open)-1]
			}
			if open[len(open)-1] != indent {
				if i+1 < n-1 {
					return 0, 0, nil
				}
				return i + 1, indent, before
			}
		}
		if item, ok := strings.CutPrefix(body, "- "); ok {
			// A list item's own keys line up with its first one.
			open = append(open, indent+2+len(item)-len(strings.TrimLeft(item, " ")))
		}
		opens = strings.HasSuffix(body, ":")
	}
	return 0, 0, nil
}

// uncommented is line without its comment (a '#' at its start or after
// a space; quoted values holding " #" are rare in a feed file).
func uncommented(line string) string {
	if strings.HasPrefix(strings.TrimLeft(line, " "), "#") {
		return ""
	}
	if i := strings.Index(line, " #"); i >= 0 {
		return line[:i]
	}
	return line
}

// joinOr lists indentations as "0, 2 or 4".
func joinOr(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

package spec

import (
	"fmt"
	"github.com/runnel-ci/runnel/internal/textdist"
	"sort"
	"strings"
)

// Error is one problem in a definition: where (file, line, column, field path)
// and what, including what is accepted.
type Error struct {
	File string `json:"file,omitempty"`
	Pos
	// Path is the field path, e.g. stages[0].jobs[1].steps[2].run.
	Path string `json:"path,omitempty"`
	Msg  string `json:"message"`
}

// Error formats as file:line:col: path: message, leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", e.Line, e.Column)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a definition, in file order.
type ErrorList []*Error

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.Line != b.Line {
			// Errors without a position go last.
			if a.Line == 0 || b.Line == 0 {
				return b.Line == 0 && a.Line != 0
			}
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// positions maps field paths to where their values were written.
type positions map[string]Pos

// Position returns where the value at a field path was written, or the nearest
// enclosing value's position.
func (p *Pipeline) Position(path string) Pos {
	for {
		if pos, ok := p.positions[path]; ok {
			return pos
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return p.positions[""]
		}
		path = path[:i]
	}
}

// suggest returns the candidate closest to s when it is close enough to be a
// likely typo, or "".
func suggest(s string, candidates []string) string {
	best, bestD := "", 0
	limit := 2
	if len(s) > 8 {
		limit = 3
	}
	ls := strings.ToLower(s)
	for _, c := range candidates {
		d := textdist.Levenshtein(ls, strings.ToLower(c))
		if d <= limit && (best == "" || d < bestD) {
			best, bestD = c, d
		}
	}
	return best
}

func didYouMean(s string, candidates []string) string {
	if m := suggest(s, candidates); m != "" {
		return fmt.Sprintf(" (did you mean %q?)", m)
	}
	return ""
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = s
	}
	return strings.Join(q, ", ")
}

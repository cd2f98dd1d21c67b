// Package mask hides secret values in text: in log streams (where a value may
// arrive split across writes), in single strings (errors, outputs).
//
// Every line of a secret value that is at least MinLen bytes long is a
// pattern (a multi-line value, such as a private key, is hidden line by
// line, since logs are stored by line). Each occurrence of a pattern becomes
// "***". Shorter lines are not patterns: masking every "ab" would make logs
// unreadable and protect nothing; the secrets API refuses values shorter
// than MinLen.
package mask

import (
	"bytes"
	"io"
	"slices"
	"strings"
)

// MinLen is the shortest secret line that is masked.
const MinLen = 4

// Replacement stands for a hidden value.
const Replacement = "***"

// Masker holds the patterns of a set of secret values. A nil *Masker masks
// nothing. It is safe for concurrent use; its Writers are not.
type Masker struct {
	patterns [][]byte // longest first, so a longer secret wins over its prefix
	maxLen   int
	repl     *strings.Replacer
}

// New returns a Masker for values, or nil when no value yields a pattern.
func New(values []string) *Masker {
	seen := map[string]bool{}
	var pats []string
	for _, v := range values {
		for line := range strings.SplitSeq(v, "\n") {
			line = strings.TrimSuffix(line, "\r")
			if len(line) >= MinLen && !seen[line] {
				seen[line] = true
				pats = append(pats, line)
			}
			// Logs lose trailing spaces of nothing, but a line is also often
			// printed trimmed (e.g. by tools that strip whitespace).
			if t := strings.TrimSpace(line); t != line && len(t) >= MinLen && !seen[t] {
				seen[t] = true
				pats = append(pats, t)
			}
		}
	}
	if len(pats) == 0 {
		return nil
	}
	slices.SortFunc(pats, func(a, b string) int { return len(b) - len(a) })
	m := &Masker{}
	args := make([]string, 0, 2*len(pats))
	for _, p := range pats {
		m.patterns = append(m.patterns, []byte(p))
		m.maxLen = max(m.maxLen, len(p))
		args = append(args, p, Replacement)
	}
	m.repl = strings.NewReplacer(args...)
	return m
}

// String returns s with every pattern replaced.
func (m *Masker) String(s string) string {
	if m == nil || s == "" {
		return s
	}
	return m.repl.Replace(s)
}

// Map returns a copy of v with every value masked (nil stays nil).
func (m *Masker) Map(v map[string]string) map[string]string {
	if m == nil || v == nil {
		return v
	}
	out := make(map[string]string, len(v))
	for k, s := range v {
		out[k] = m.String(s)
	}
	return out
}

// Writer masks a byte stream on its way to w. Bytes that may be the start of
// a secret whose end has not arrived yet are held back until the next Write
// or Flush, so a value split across writes is still found. Call Flush when
// the stream ends.
type Writer struct {
	m       *Masker
	w       io.Writer
	pending []byte
	out     []byte
}

// Writer returns a masking writer in front of w; with a nil Masker it returns
// a pass-through writer.
func (m *Masker) Writer(w io.Writer) *Writer { return &Writer{m: m, w: w} }

// Write masks p (with what was held back) and passes on what is final.
func (w *Writer) Write(p []byte) (int, error) {
	if w.m == nil {
		return w.w.Write(p)
	}
	w.pending = append(w.pending, p...)
	if err := w.process(false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush passes on everything held back.
func (w *Writer) Flush() error {
	if w.m == nil || len(w.pending) == 0 {
		return nil
	}
	return w.process(true)
}

func (w *Writer) process(final bool) error {
	buf := w.pending
	w.out = w.out[:0]
	i := 0
scan:
	for i < len(buf) {
		rest := buf[i:]
		if !final && len(rest) < w.m.maxLen {
			// rest may be the beginning of a pattern (possibly a longer one
			// than a pattern it already matches): wait for more.
			for _, p := range w.m.patterns {
				if len(rest) < len(p) && bytes.HasPrefix(p, rest) {
					break scan
				}
			}
		}
		for _, p := range w.m.patterns {
			if rest[0] == p[0] && bytes.HasPrefix(rest, p) {
				w.out = append(w.out, Replacement...)
				i += len(p)
				continue scan
			}
		}
		w.out = append(w.out, buf[i])
		i++
	}
	n := copy(w.pending, buf[i:])
	w.pending = w.pending[:n]
	if len(w.out) == 0 {
		return nil
	}
	_, err := w.w.Write(w.out)
	return err
}

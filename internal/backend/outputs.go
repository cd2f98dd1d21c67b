package backend

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// MaxOutputFileSize is how much of a step's $RUNNEL_OUTPUT file is read. The
// limit keeps a runaway step from filling the database with outputs.
const MaxOutputFileSize = 1 << 20

// outputKey is the syntax of an output name. It is stricter than what a shell
// accepts in a file so that names are usable in expressions as-is.
var outputKey = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`) })

// ParseOutputs reads the file a step wrote through $RUNNEL_OUTPUT and returns
// the outputs it declares, plus warnings for what it ignored. Every backend
// uses it so that outputs mean the same thing everywhere.
//
// The format is GitHub's: one `KEY=VALUE` per line, or a heredoc
//
//	KEY<<DELIMITER
//	line 1
//	line 2
//	DELIMITER
//
// whose value is the lines in between joined with "\n". The first "=" or "<<"
// on a line decides which form it is. A "\r" before a "\n" is ignored, blank
// lines are skipped, and a later definition of a key replaces an earlier one.
// Keys match [A-Za-z_][A-Za-z0-9_-]*. A malformed line is skipped with a
// warning; a heredoc that is never closed is dropped with a warning together
// with the rest of the file (its intended value). Only the first MaxOutputFileSize
// bytes are read; when the file is longer, the line cut by the limit is
// dropped too (it would yield a truncated value) and a warning says so.
//
// Warnings are complete sentences without a prefix; the caller shows them to
// the user (the local backend prints "runnel: " + warning into the step log).
func ParseOutputs(r io.Reader) (map[string]string, []string) {
	var warnings []string
	data, err := io.ReadAll(io.LimitReader(r, MaxOutputFileSize+1))
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("reading $RUNNEL_OUTPUT failed after %d bytes: %v", len(data), err))
	}
	if len(data) > MaxOutputFileSize {
		data = data[:MaxOutputFileSize]
		if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
			data = data[:i+1]
		} else {
			data = nil
		}
		warnings = append(warnings, fmt.Sprintf("$RUNNEL_OUTPUT is larger than %d bytes; only the lines within the first %d bytes were read", MaxOutputFileSize, MaxOutputFileSize))
	}

	lines := strings.Split(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i := range lines {
		lines[i] = strings.TrimSuffix(lines[i], "\r")
	}

	outputs := map[string]string{}
	malformed := func(n int, format string, args ...any) {
		warnings = append(warnings, fmt.Sprintf("ignoring malformed line %d in $RUNNEL_OUTPUT: ", n)+fmt.Sprintf(format, args...))
	}
	for i := 0; i < len(lines); i++ {
		line, n := lines[i], i+1
		if strings.TrimSpace(line) == "" {
			continue
		}
		eq := strings.IndexByte(line, '=')
		hd := strings.Index(line, "<<")
		switch {
		case hd >= 0 && (eq < 0 || hd < eq):
			key, delim := line[:hd], line[hd+2:]
			if delim == "" {
				malformed(n, "heredoc for %q has an empty delimiter", clip(key, 60))
				continue
			}
			end := -1
			for j := i + 1; j < len(lines); j++ {
				if lines[j] == delim {
					end = j
					break
				}
			}
			if end < 0 {
				// Everything after an open heredoc was meant as its value;
				// reading it as KEY=VALUE lines could invent outputs.
				malformed(n, "heredoc for %q is not closed by a line %q; the rest of the file is ignored", clip(key, 60), clip(delim, 60))
				return outputs, warnings
			}
			if !outputKey().MatchString(key) {
				// The body is skipped with its header, for the same reason.
				malformed(n, "invalid key %q (want [A-Za-z_][A-Za-z0-9_-]*)", clip(key, 60))
			} else {
				outputs[key] = strings.Join(lines[i+1:end], "\n")
			}
			i = end
		case eq >= 0:
			key, value := line[:eq], line[eq+1:]
			if !outputKey().MatchString(key) {
				malformed(n, "invalid key %q (want [A-Za-z_][A-Za-z0-9_-]*)", clip(key, 60))
				continue
			}
			outputs[key] = value
		default:
			malformed(n, "expected KEY=VALUE or KEY<<DELIMITER, got %q", clip(line, 60))
		}
	}
	return outputs, warnings
}

// clip shortens s for a warning without cutting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

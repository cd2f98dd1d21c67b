// Package logline turns the raw byte stream of a step (its combined stdout and
// stderr) into log lines that are safe to store and display: valid UTF-8 and of
// bounded length, whatever the step printed.
package logline

import (
	"unicode/utf8"
)

// DefaultMaxLine is the line limit used when NewSplitter is given maxLine <= 0.
const DefaultMaxLine = 64 << 10

// replacement is what a run of invalid UTF-8 bytes becomes, as with
// strings.ToValidUTF8(s, "\uFFFD").
const replacement = "\uFFFD"

// Splitter is an io.Writer that cuts a byte stream into lines and calls emit for
// each one.
//
// Rules:
//   - Lines end at '\n'; one '\r' right before the '\n' is dropped. The '\n' is
//     never part of an emitted line.
//   - Every run of invalid UTF-8 bytes becomes one U+FFFD, exactly as
//     strings.ToValidUTF8 does; a multi-byte sequence split across Write calls is
//     reassembled first. So every emitted line is valid UTF-8.
//   - maxLine is measured on the emitted (already sanitised) text, so no emitted
//     line is longer than maxLine bytes: there is no slack for replacement
//     characters. A longer line is emitted in several chunks, cut between
//     characters, never inside a UTF-8 sequence. maxLine is raised to
//     utf8.UTFMax when smaller, so that every character fits in a chunk.
//   - A chunk boundary never falls inside a run of invalid bytes (the run's
//     U+FFFD goes whole into one chunk), so chunking changes no text: the
//     chunks of a line concatenate to the line that would be emitted without
//     the limit.
//
// Memory stays O(maxLine) whatever the input (a 10 MB stream without a newline
// is fine) and the work is linear in the input.
//
// A Splitter is not safe for concurrent use: the backend writes to it from one
// goroutine.
type Splitter struct {
	max  int
	emit func(line string)
	// line holds the current, sanitised, not yet emitted text; len(line) <= max.
	line []byte
	// invalid is true when the last thing appended to line was a replacement for
	// invalid bytes, so that further invalid bytes collapse into it.
	invalid bool
	// pendingCR is a '\r' seen but not yet appended: it is dropped if a '\n'
	// follows. Holding it back also keeps it from forcing a chunk boundary just
	// before a "\r\n".
	pendingCR bool
	// carry holds the start of a UTF-8 sequence that the previous Write cut
	// short (at most utf8.UTFMax-1 bytes).
	carry  [utf8.UTFMax]byte
	ncarry int
	// scratch joins carry with the first bytes of the next Write.
	scratch [2 * utf8.UTFMax]byte
}

// NewSplitter returns a Splitter that calls emit for every line. maxLine <= 0
// means DefaultMaxLine (64 KiB).
func NewSplitter(maxLine int, emit func(line string)) *Splitter {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	if maxLine < utf8.UTFMax {
		maxLine = utf8.UTFMax
	}
	return &Splitter{max: maxLine, emit: emit}
}

// Write consumes p and emits every line it completes. It never fails and always
// reports len(p) bytes written, so that a step's output is never blocked by its
// log.
func (s *Splitter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if s.ncarry == 0 {
			s.setCarry(s.process(p))
			break
		}
		// Finish the sequence cut short by the previous Write: utf8.UTFMax more
		// bytes are always enough to decide it.
		k := min(len(p), utf8.UTFMax)
		buf := append(s.scratch[:0], s.carry[:s.ncarry]...)
		buf = append(buf, p[:k]...)
		p = p[k:]
		s.setCarry(s.process(buf))
	}
	return n, nil
}

// Flush emits the pending partial line, if any; an incomplete UTF-8 sequence at
// the end of the stream becomes U+FFFD. The Splitter can be written to again
// afterwards (the next byte starts a new line).
func (s *Splitter) Flush() {
	s.flushCR() // a held-back '\r' precedes any carried bytes
	if s.ncarry > 0 {
		s.ncarry = 0
		s.appendInvalid()
	}
	if len(s.line) > 0 {
		s.emitLine()
	}
	s.invalid = false
}

// setCarry stores the unfinished tail returned by process.
func (s *Splitter) setCarry(tail []byte) {
	s.ncarry = copy(s.carry[:], tail)
}

// process consumes b and returns its tail when b ends in the middle of a
// (possibly valid) UTF-8 sequence; that tail is at most utf8.UTFMax-1 bytes.
func (s *Splitter) process(b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '\n':
			s.pendingCR = false // "\r\n": the '\r' is dropped
			s.emitLine()
			i++
		case c == '\r':
			s.flushCR() // only the last '\r' before '\n' is dropped
			s.pendingCR = true
			i++
		case c < utf8.RuneSelf:
			j := i + 1
			for j < len(b) && b[j] < utf8.RuneSelf && b[j] != '\n' && b[j] != '\r' {
				j++
			}
			s.flushCR()
			s.appendASCII(b[i:j])
			i = j
		default:
			if !utf8.FullRune(b[i:]) {
				return b[i:]
			}
			r, w := utf8.DecodeRune(b[i:])
			s.flushCR()
			if r == utf8.RuneError && w == 1 {
				s.appendInvalid()
			} else {
				s.appendRune(b[i : i+w])
			}
			i += w
		}
	}
	return nil
}

// flushCR appends a held-back '\r' that turned out not to end the line.
func (s *Splitter) flushCR() {
	if s.pendingCR {
		s.pendingCR = false
		s.appendASCII([]byte{'\r'})
	}
}

// appendASCII appends single-byte characters, emitting full chunks as needed.
// A chunk is emitted only when more text must go after it, so a line of exactly
// max bytes stays one line.
func (s *Splitter) appendASCII(b []byte) {
	for len(b) > 0 {
		room := s.max - len(s.line)
		if room == 0 {
			s.emitLine()
			room = s.max
		}
		n := min(room, len(b))
		s.line = append(s.line, b[:n]...)
		b = b[n:]
	}
	s.invalid = false
}

// appendRune appends one valid multi-byte character.
func (s *Splitter) appendRune(r []byte) {
	if len(s.line)+len(r) > s.max {
		s.emitLine()
	}
	s.line = append(s.line, r...)
	s.invalid = false
}

// appendInvalid records one invalid byte: a U+FFFD unless the previous byte was
// invalid too.
func (s *Splitter) appendInvalid() {
	if s.invalid {
		return
	}
	if len(s.line)+len(replacement) > s.max {
		s.emitLine()
	}
	s.line = append(s.line, replacement...)
	s.invalid = true
}

// emitLine hands the current text to emit and starts a new line or chunk.
func (s *Splitter) emitLine() {
	line := string(s.line)
	s.line = s.line[:0]
	s.invalid = false
	s.emit(line)
}

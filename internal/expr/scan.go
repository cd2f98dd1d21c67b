package expr

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file holds the two text-level passes that run before expr-lang sees
// anything: splitting a template into literal text and ${{ … }} segments, and
// rewriting an expression so expr-lang accepts the forms users write. Both
// are byte scanners that understand string literals, because the two things
// they look for ("}}" and names) can legitimately appear inside quotes.

// rawPart is one piece of a template before compilation: literal text, or the
// source of one ${{ … }} segment.
type rawPart struct {
	lit    string // literal text (already unescaped) when !isExpr
	isExpr bool
	src    string // expression text between "${{" and "}}"
	start  int    // byte offset of "${{" in the template
	off    int    // byte offset of src in the template
}

// splitTemplate cuts src into literal text and expression segments.
//
// "$${{" is the escape for a literal "${{". The end of a segment is the first
// "}}" that is outside string literals and not closing a "{" opened inside the
// segment (map literals and if/else blocks), so `${{ format('{0}}}', a) }}`
// and `${{ {"a": {"b": 1}} }}` both work.
func splitTemplate(src string) ([]rawPart, *Error) {
	var parts []rawPart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, rawPart{lit: lit.String()})
			lit.Reset()
		}
	}
	i := 0
	for i < len(src) {
		j := strings.Index(src[i:], "${{")
		if j < 0 {
			lit.WriteString(src[i:])
			break
		}
		j += i
		if j > i && src[j-1] == '$' {
			// "$${{": literal "${{", no evaluation.
			lit.WriteString(src[i : j-1])
			lit.WriteString("${{")
			i = j + 3
			continue
		}
		lit.WriteString(src[i:j])
		end, err := findSegmentEnd(src, j)
		if err != nil {
			return nil, err
		}
		flush()
		parts = append(parts, rawPart{isExpr: true, src: src[j+3 : end], start: j, off: j + 3})
		i = end + 2
	}
	flush()
	return parts, nil
}

// findSegmentEnd returns the offset of the "}}" closing the segment that
// opens at start ("${{") or, when there is none, an error saying why.
func findSegmentEnd(src string, start int) (int, *Error) {
	depth := 0
	openQuote := -1 // a quote still open at the end of src
	for i := start + 3; i < len(src); i++ {
		switch c := src[i]; c {
		case '\'', '"':
			j := i + 1
			for j < len(src) && src[j] != c && src[j] != '\n' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				openQuote = i
				i = len(src)
				break
			}
			if src[j] == '\n' {
				// Quote parity after this point is a guess, so stop here:
				// expr-lang strings in ' and " cannot contain a newline.
				return -1, &Error{Offset: i, Msg: "syntax error: string literal not terminated (a quoted string must end on the line it starts; use \\n for a newline)"}
			}
			i = j
		case '`':
			j := strings.IndexByte(src[i+1:], '`')
			if j < 0 {
				openQuote = i
				i = len(src)
				break
			}
			i += 1 + j
		case '{':
			depth++
		case '}':
			if depth > 0 {
				depth--
				continue
			}
			if i+1 < len(src) && src[i+1] == '}' {
				return i, nil
			}
		}
	}
	const msg = `unterminated ${{ … }}: missing "}}"`
	switch {
	case openQuote >= 0 && strings.Contains(src[openQuote:], "}}"):
		return -1, &Error{Offset: openQuote, Msg: msg + `: this string literal is not closed, so the "}}" after it is part of the string`}
	case strings.Contains(src[start+3:], "}}"):
		return -1, &Error{Offset: start, Msg: msg + `: a "{" inside it is not closed, so the "}}" after it closes that "{"`}
	}
	return -1, &Error{Offset: start, Msg: msg}
}

// piece maps a run of the rewritten expression to the original one. Pieces of
// equal length map byte for byte; other pieces (inserted text) map every byte
// to origFrom.
type piece struct {
	newFrom, newLen, origFrom, origLen int
}

// offsetMap translates byte offsets in a rewritten expression back to the
// source the user wrote, so errors point at what they typed.
type offsetMap struct {
	pieces  []piece // nil when the expression was not rewritten
	origLen int
}

func (m *offsetMap) orig(p int) int {
	if p < 0 {
		return 0
	}
	if m.pieces == nil {
		if p > m.origLen {
			return m.origLen
		}
		return p
	}
	i := sort.Search(len(m.pieces), func(i int) bool { return m.pieces[i].newFrom > p }) - 1
	if i < 0 {
		return 0
	}
	pc := m.pieces[i]
	if p >= pc.newFrom+pc.newLen {
		// Past the end of the rewritten text.
		return m.origLen
	}
	if pc.newLen == pc.origLen {
		return pc.origFrom + (p - pc.newFrom)
	}
	return pc.origFrom
}

// rewriter builds the rewritten expression lazily: original text is copied
// only when a rewrite needs everything before it.
type rewriter struct {
	src    string
	out    strings.Builder
	pieces []piece
	copied int // src[:copied] has been emitted
}

func (w *rewriter) copyTo(end int) {
	if end > w.copied {
		w.pieces = append(w.pieces, piece{newFrom: w.out.Len(), newLen: end - w.copied, origFrom: w.copied, origLen: end - w.copied})
		w.out.WriteString(w.src[w.copied:end])
		w.copied = end
	}
}

// insert emits text that has no counterpart in the source; errors inside it
// point at origAt.
func (w *rewriter) insert(text string, origAt int) {
	w.pieces = append(w.pieces, piece{newFrom: w.out.Len(), newLen: len(text), origFrom: origAt})
	w.out.WriteString(text)
}

// skip drops src[copied:end] from the output.
func (w *rewriter) skip(end int) { w.copied = end }

func (w *rewriter) result() (string, *offsetMap) {
	if w.pieces == nil {
		return w.src, &offsetMap{origLen: len(w.src)}
	}
	w.copyTo(len(w.src))
	return w.out.String(), &offsetMap{pieces: w.pieces, origLen: len(w.src)}
}

// Words the expr-lang lexer turns into operators. "not" is handled apart.
var operatorWords = map[string]bool{
	"in": true, "or": true, "and": true, "matches": true, "let": true, "if": true, "else": true,
	"contains": true, "startsWith": true, "endsWith": true,
}

// callableOperators are the operators that users may also call as functions;
// the call form is renamed to an internal function.
var callableOperators = map[string]string{
	"contains":   fnContains,
	"startsWith": fnStartsWith,
	"endsWith":   fnEndsWith,
}

// Mirror expr-lang's lexer (parser/utils) so names are cut where it cuts them.
func isAlphabetic(r rune) bool   { return r == '_' || r == '$' || unicode.IsLetter(r) }
func isAlphaNumeric(r rune) bool { return isAlphabetic(r) || unicode.IsDigit(r) }

// rewriteExpr turns what users write into what expr-lang accepts:
//
//   - contains(a, b), startsWith(a, b), endsWith(a, b): in expr-lang these
//     are infix operators ("a contains b"), so the call form does not parse.
//     When one of them stands where an operand is expected and is followed by
//     "(", it is renamed to an internal function (__contains). The infix forms
//     are left alone.
//   - Dashed member names: step and job ids are often "go-build", and
//     steps.go-build.outputs.bin would parse as steps.go - build.outputs.bin.
//     A name right after a member "." (or "?.") continues through "-" when the
//     dash is directly followed by a letter or digit, and the access becomes
//     steps["go-build"]. Subtraction needs spaces or a non-member left side:
//     "a - b", "run.number - 1". This means run.number-1 is read as the
//     member "number-1" (and reported as an unknown field).
//
// Names starting with "__" are reserved for the rewritten functions.
func rewriteExpr(src string) (string, *offsetMap, *Error) {
	w := &rewriter{src: src}
	endsOperand := false  // the previous token ends an operand (so an operator may follow)
	afterDot := -1        // offset of a member-access "." just before, else -1
	memberDot := false    // that "." follows an operand (not a predicate ".field")
	optionalDot := false  // that "." is part of "?."
	pendingInfix := false // "a not …": the next operator word is infix
	depth := 0            // bracket nesting
	n := len(src)
	for i := 0; i < n; {
		r, size := utf8.DecodeRuneInString(src[i:])
		dot, infix := afterDot, pendingInfix
		afterDot, pendingInfix = -1, false
		switch {
		case unicode.IsSpace(r):
			afterDot, pendingInfix = dot, infix // "a. b" still reads a member name
			i += size
		case r == '/' && i+1 < n && src[i+1] == '/':
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				j = n - i
			}
			afterDot, pendingInfix = dot, infix
			i += j
		case r == '/' && i+1 < n && src[i+1] == '*':
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				i = n
			} else {
				i += 2 + j + 2
			}
			afterDot, pendingInfix = dot, infix
		case r == '\'' || r == '"' ||
			((r == 'b' || r == 'B') && i+1 < n && (src[i+1] == '\'' || src[i+1] == '"')):
			if r == 'b' || r == 'B' {
				i++
			}
			q := src[i]
			j := i + 1
			for j < n && src[j] != q && src[j] != '\n' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			i = min(j+1, n)
			endsOperand = true
		case r == '`':
			j := strings.IndexByte(src[i+1:], '`')
			if j < 0 {
				i = n
			} else {
				i += 1 + j + 1
			}
			endsOperand = true
		case r >= '0' && r <= '9', r == '.' && i+1 < n && src[i+1] >= '0' && src[i+1] <= '9':
			i = scanNumber(src, i)
			endsOperand = true
		case r == '#':
			j := i + 1
			if j < n && src[j] == '#' {
				j++
			}
			i = scanName(src, j)
			endsOperand = true
		case isAlphabetic(r):
			j := scanName(src, i)
			word := src[i:j]
			if dot >= 0 {
				// A member name: never an operator, may contain dashes.
				k := j
				for memberDot && k+1 < n && src[k] == '-' {
					r2, _ := utf8.DecodeRuneInString(src[k+1:])
					if !isAlphaNumeric(r2) {
						break
					}
					k = scanName(src, k+1)
				}
				if k > j {
					w.copyTo(dot)
					if optionalDot {
						w.insert(".[", dot)
					} else {
						w.insert("[", dot)
					}
					w.insert(`"`, i)
					w.skip(i)
					w.copyTo(k)
					w.insert(`"]`, k)
					j = k
				}
				i = j
				endsOperand = true
				break
			}
			if word == "not" {
				pendingInfix = endsOperand
				endsOperand = false
				i = j
				break
			}
			if operatorWords[word] {
				if fn, ok := callableOperators[word]; ok && !endsOperand && !infix && nextNonSpace(src, j) == '(' {
					w.copyTo(i)
					w.insert(fn[:len(fn)-len(word)], i)
				}
				endsOperand = false
				i = j
				break
			}
			if strings.HasPrefix(word, "__") {
				return "", nil, &Error{Offset: i, Msg: reservedMsg(word)}
			}
			endsOperand = true
			i = j
		case r == '.':
			if i+1 < n && src[i+1] == '.' { // range operator ".."
				endsOperand = false
				i += 2
				break
			}
			afterDot = i
			memberDot = endsOperand
			optionalDot = false
			endsOperand = false
			i++
		case r == '?' && i+1 < n && src[i+1] == '.':
			afterDot = i + 1
			memberDot = endsOperand
			optionalDot = true
			endsOperand = false
			i += 2
		case r == ')' || r == ']' || r == '}':
			endsOperand = true
			depth--
			i++
		case r == '(' || r == '[' || r == '{':
			if depth++; depth > maxDepth {
				return "", nil, &Error{Offset: i, Msg: fmt.Sprintf("expression is nested too deeply (more than %d levels of brackets)", maxDepth)}
			}
			endsOperand = false
			i++
		default:
			endsOperand = false
			i += size
		}
	}
	out, m := w.result()
	return out, m, nil
}

func reservedMsg(word string) string {
	return `names starting with "__" are reserved: "` + word + `"`
}

// scanName returns the end of the identifier characters starting at i.
func scanName(src string, i int) int {
	for i < len(src) {
		r, size := utf8.DecodeRuneInString(src[i:])
		if !isAlphaNumeric(r) {
			break
		}
		i += size
	}
	return i
}

// scanNumber returns the end of a number literal starting at i. It only has to
// find where the token ends; expr-lang validates it.
func scanNumber(src string, i int) int {
	n := len(src)
	alnum := func(c byte) bool {
		return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
	}
	start := i
	sawDot := false
	if src[i] == '.' {
		sawDot = true
		i++
	}
	for {
		for i < n && alnum(src[i]) {
			i++
		}
		tok := src[start:i]
		hex := len(tok) > 1 && tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X')
		if i < n && i > start && (src[i] == '+' || src[i] == '-') && (src[i-1] == 'e' || src[i-1] == 'E') && !hex {
			i++
			continue
		}
		if !sawDot && i+1 < n && src[i] == '.' && src[i+1] != '.' {
			sawDot = true
			i++
			continue
		}
		return i
	}
}

func nextNonSpace(src string, i int) byte {
	for i < len(src) {
		switch src[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return src[i]
		}
	}
	return 0
}

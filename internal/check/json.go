package check

import (
	"strconv"
	"unicode/utf8"
)

// ValidJSONText reports whether a JSON text is valid UTF-8 and every \u
// escape of a UTF-16 surrogate is half of a pair.
func ValidJSONText(raw []byte) bool {
	if !utf8.Valid(raw) {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++ // the escaped character: "\\" is skipped whole
		if i >= len(raw) || raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw[i+1:])
		if !ok {
			return false
		}
		i += 4
		switch {
		case r >= 0xD800 && r < 0xDC00: // high half: a low half must follow
			if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return false
			}
			lo, ok := hex4(raw[i+3:])
			if !ok || lo < 0xDC00 || lo >= 0xE000 {
				return false
			}
			i += 6
		case r >= 0xDC00 && r < 0xE000: // a low half alone
			return false
		}
	}
	return true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 16)
	return rune(n), err == nil
}

// JSONDepth is how deeply the arrays and objects of a JSON text nest (0 for
// a scalar). It reads the text as it is: for a text that is not JSON the
// answer means nothing, and the caller has checked the syntax before.
func JSONDepth(raw []byte) int {
	depth, most := 0, 0
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			depth++
			most = max(most, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return most
}

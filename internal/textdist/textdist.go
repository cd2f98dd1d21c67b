// Package textdist measures how far apart two names are, for the "did you
// mean …?" hints of error messages.
package textdist

// maxRunes bounds the inputs: names this long are not typos of short field or
// context names, and the cost is quadratic.
const maxRunes = 64

// Levenshtein returns the edit distance between a and b, or a huge number when
// either is longer than 64 runes.
func Levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > maxRunes || len(rb) > maxRunes {
		return 1 << 30
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

package textdist

import (
	"strings"
	"testing"
)

func TestLevenshtein(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"steps", "steps", 0}, {"stpes", "steps", 2}, {"trigge", "trigger", 1},
		{"kitten", "sitting", 3}, {"", "abc", 3}, {"über", "uber", 1},
		{strings.Repeat("a", 65), "a", 1 << 30},
	}
	for _, tt := range tests {
		if got := Levenshtein(tt.a, tt.b); got != tt.want {
			t.Errorf("Levenshtein(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

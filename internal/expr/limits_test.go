package expr

import (
	"strings"
	"testing"
)

// TestLimits: hostile input must give errors, not exhaust the parser's stack.
func TestLimits(t *testing.T) {
	deep := "${{ " + strings.Repeat("(", 300) + "1" + strings.Repeat(")", 300) + " }}"
	_, err := ParseTemplate(deep)
	if e, ok := err.(*Error); !ok || e.Offset != 4+maxDepth || !strings.Contains(e.Msg, "nested too deeply") {
		t.Errorf("deep nesting: %v", err)
	}
	ok := "${{ " + strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200) + " }}"
	if _, err := ParseTemplate(ok); err != nil {
		t.Errorf("200 levels: %v", err)
	}
	long := "x ${{ '" + strings.Repeat("a", maxExprLen) + "' }}"
	if _, err := ParseTemplate(long); err == nil || err.(*Error).Offset != 5 || !strings.Contains(err.Error(), "too long") {
		t.Errorf("long expression: %v", err)
	}
	for _, src := range []string{
		strings.Repeat("!", maxExprLen-10) + "true",
		strings.Repeat("not ", maxExprLen/4-10) + "true",
		strings.Repeat("1+", maxExprLen/2-10) + "1",
		"x" + strings.Repeat(".a", maxExprLen/2-10),
	} {
		_, err := ParseTemplate("${{ " + src + " }}")
		if err == nil || !strings.Contains(err.Error(), "maximum allowed nodes") {
			t.Errorf("%.10s…: %v", src, err)
		}
	}
	// Thousands of unknown names: Check stays fast (offsets are not
	// recomputed from the start of the expression for every node).
	many := "${{ é" + strings.Repeat(" + é", 2000) + " }}"
	tp, err := ParseTemplate(many)
	if err != nil {
		t.Fatal(err)
	}
	if errs := tp.Check(Scope{}); len(errs) != 2001 {
		t.Errorf("got %d errors", len(errs))
	}
}

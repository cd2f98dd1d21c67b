package spec

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

var (
	labelKeyRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$`) })
	labelValRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._-]*$`) })
)

// SelectorOp is the operator of a label selector.
type SelectorOp string

// Selector operators.
const (
	OpEquals    SelectorOp = "="
	OpNotEquals SelectorOp = "!="
	OpIn        SelectorOp = "in"
	OpNotIn     SelectorOp = "notin"
	OpExists    SelectorOp = "exists"
	OpNotExists SelectorOp = "!exists"
)

// Selector is one parsed runsOn selector expression.
type Selector struct {
	Key    string
	Op     SelectorOp
	Values []string
}

var setSelectorRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([^\s!=()]+)\s+(in|notin)\s*\(([^()]*)\)$`) })

// ParseSelector parses key=value, key==value, key!=value, key in (a,b),
// key notin (a,b), key and !key.
func ParseSelector(s string) (Selector, error) {
	s = strings.TrimSpace(s)
	fail := func(why string) (Selector, error) {
		return Selector{}, fmt.Errorf("invalid selector %q: %s; accepted forms: key=value, key!=value, key in (a,b), key notin (a,b), key, !key", s, why)
	}
	if s == "" {
		return fail("empty")
	}
	if m := setSelectorRe().FindStringSubmatch(s); m != nil {
		sel := Selector{Key: m[1], Op: SelectorOp(m[2])}
		for _, v := range strings.Split(m[3], ",") {
			v = strings.TrimSpace(v)
			if v == "" || !labelValRe().MatchString(v) {
				return fail(fmt.Sprintf("bad value %q in the list", v))
			}
			sel.Values = append(sel.Values, v)
		}
		if !labelKeyRe().MatchString(sel.Key) {
			return fail(fmt.Sprintf("bad key %q", sel.Key))
		}
		return sel, nil
	}
	var sel Selector
	switch {
	case strings.Contains(s, "!="):
		k, v, _ := strings.Cut(s, "!=")
		sel = Selector{Key: strings.TrimSpace(k), Op: OpNotEquals, Values: []string{strings.TrimSpace(v)}}
	case strings.Contains(s, "=="):
		k, v, _ := strings.Cut(s, "==")
		sel = Selector{Key: strings.TrimSpace(k), Op: OpEquals, Values: []string{strings.TrimSpace(v)}}
	case strings.Contains(s, "="):
		k, v, _ := strings.Cut(s, "=")
		sel = Selector{Key: strings.TrimSpace(k), Op: OpEquals, Values: []string{strings.TrimSpace(v)}}
	case strings.HasPrefix(s, "!"):
		sel = Selector{Key: strings.TrimSpace(s[1:]), Op: OpNotExists}
	default:
		sel = Selector{Key: s, Op: OpExists}
	}
	if !labelKeyRe().MatchString(sel.Key) {
		return fail(fmt.Sprintf("bad key %q", sel.Key))
	}
	for _, v := range sel.Values {
		if !labelValRe().MatchString(v) {
			return fail(fmt.Sprintf("bad value %q", v))
		}
	}
	return sel, nil
}

// Matches reports whether a set of agent labels satisfies the selector.
func (s Selector) Matches(labels map[string]string) bool {
	v, ok := labels[s.Key]
	switch s.Op {
	case OpEquals:
		return ok && v == s.Values[0]
	case OpNotEquals:
		return !ok || v != s.Values[0]
	case OpIn:
		return ok && contains(s.Values, v)
	case OpNotIn:
		return !ok || !contains(s.Values, v)
	case OpExists:
		return ok
	case OpNotExists:
		return !ok
	}
	return false
}

package expr

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Template is a string that may contain ${{ … }} segments, compiled once.
// It is immutable and safe for concurrent use.
type Template struct {
	src   string
	parts []tplPart
	// single is set when the template is exactly one segment, with only
	// whitespace around it: EvalValue then returns the raw value.
	single *program
}

type tplPart struct {
	lit  string
	prog *program // nil for literal text
}

// ParseTemplate splits src into literal text and ${{ … }} segments and
// compiles every segment. Errors are *Error with a byte offset into src:
// unterminated segments, syntax errors and type errors. Unknown names and
// anything that depends on where the template is used are reported by Check.
func ParseTemplate(src string) (*Template, error) {
	raw, err := splitTemplate(src)
	if err != nil {
		return nil, err
	}
	t := &Template{src: src, parts: make([]tplPart, 0, len(raw))}
	nexpr, nother := 0, 0
	for _, r := range raw {
		if !r.isExpr {
			t.parts = append(t.parts, tplPart{lit: r.lit})
			if strings.TrimSpace(r.lit) != "" {
				nother++
			}
			continue
		}
		if strings.TrimSpace(r.src) == "" {
			return nil, &Error{Offset: r.start, Msg: "empty expression: ${{ }} needs an expression inside, such as ${{ variables.name }}"}
		}
		p, err := compile(r.src, r.off)
		if err != nil {
			return nil, err
		}
		t.parts = append(t.parts, tplPart{prog: p})
		nexpr++
	}
	if nexpr == 1 && nother == 0 {
		for _, p := range t.parts {
			if p.prog != nil {
				t.single = p.prog
			}
		}
	}
	return t, nil
}

// IsLiteral reports whether the template has no ${{ }} segment; then Eval
// returns the (unescaped) text without looking at the Env.
func (t *Template) IsLiteral() bool {
	for _, p := range t.parts {
		if p.prog != nil {
			return false
		}
	}
	return true
}

// String returns the source of the template.
func (t *Template) String() string { return t.src }

// Check reports the static problems of the template for a field with scope s.
// Every error is an *Error; an empty result means the template can be
// evaluated in that field.
func (t *Template) Check(s Scope) []error {
	var out []error
	for _, p := range t.parts {
		if p.prog != nil {
			out = append(out, p.prog.check(&s)...)
		}
	}
	sortErrors(out)
	return out
}

func sortErrors(errs []error) {
	sort.SliceStable(errs, func(i, j int) bool {
		var a, b *Error
		errors.As(errs[i], &a)
		errors.As(errs[j], &b)
		return a != nil && b != nil && a.Offset < b.Offset
	})
}

// Eval evaluates the template to its string form: segment values are turned
// into text (see the package documentation) and concatenated with the
// literal text.
func (t *Template) Eval(env *Env) (string, error) {
	if len(t.parts) == 1 {
		p := t.parts[0]
		if p.prog == nil {
			return p.lit, nil
		}
		v, err := p.prog.run(env)
		if err != nil {
			return "", err
		}
		return t.stringForm(p.prog, v)
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.prog.run(env)
		if err != nil {
			return "", err
		}
		s, err := t.stringForm(p.prog, v)
		if err != nil {
			return "", err
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

func (t *Template) stringForm(p *program, v any) (string, error) {
	s, err := toString(v)
	if err != nil {
		return "", &Error{Offset: p.off, Msg: err.Error()}
	}
	return s, nil
}

// EvalValue is Eval, except that a template that is exactly one ${{ }}
// segment (whitespace around it allowed) yields the raw value: bool, number,
// list, map, nil…
func (t *Template) EvalValue(env *Env) (any, error) {
	if t.single != nil {
		return t.single.run(env)
	}
	return t.Eval(env)
}

// Condition is a compiled `if` field. It is immutable and safe for concurrent
// use.
type Condition struct {
	src  string
	prog *program // nil for the default condition, success()
}

// ParseCondition parses an `if` field, written bare (failure() || x) or
// wrapped as a whole (${{ failure() || x }}). "" means the default, success().
// Offsets in errors are byte offsets into src.
func ParseCondition(src string) (*Condition, error) {
	c := &Condition{src: src}
	trimmed := strings.TrimSpace(src)
	if trimmed == "" {
		return c, nil
	}
	if strings.HasPrefix(trimmed, "${{") {
		lead := len(src) - len(strings.TrimLeft(src, " \t\r\n"))
		end, err := findSegmentEnd(src, lead)
		if err != nil {
			return nil, err
		}
		if rest := src[end+2:]; strings.TrimSpace(rest) != "" {
			off := end + 2 + len(rest) - len(strings.TrimLeft(rest, " \t\r\n"))
			return nil, &Error{Offset: off, Msg: `an "if" condition must be one expression: write it bare (a && b) or wrap all of it in one ${{ }}`}
		}
		inner := src[lead+3 : end]
		if strings.TrimSpace(inner) == "" {
			return nil, &Error{Offset: lead, Msg: `empty expression: ${{ }} needs a condition inside, such as ${{ failure() }}; leave "if" out for the default, success()`}
		}
		p, err := compile(inner, lead+3)
		if err != nil {
			return nil, err
		}
		c.prog = p
		return c, nil
	}
	p, err := compile(src, 0)
	if err != nil {
		if i := strings.Index(src, "${{"); i >= 0 {
			return nil, &Error{Offset: i, Msg: `an "if" condition must be one expression: write it bare (a && b) or wrap all of it in one ${{ }}`}
		}
		return nil, err
	}
	c.prog = p
	return c, nil
}

// Check reports the static problems of the condition; status functions are
// always allowed in conditions.
func (c *Condition) Check(s Scope) []error {
	if c.prog == nil {
		return nil
	}
	s.StatusFunctions = true
	out := c.prog.check(&s)
	sortErrors(out)
	return out
}

// Eval evaluates the condition. When it calls none of success(), failure(),
// always() and cancelled() it means success() && (expr), like GitHub Actions:
// a step after a failure does not run unless its condition says so. Non-bool
// results are judged by truthiness: false, nil, "", 0 are false.
func (c *Condition) Eval(env *Env) (bool, error) {
	if env == nil {
		env = emptyEnv
	}
	if c.prog == nil || c.prog.status == 0 {
		if env.Status.Failed || env.Status.Cancelled {
			return false, nil
		}
		if c.prog == nil {
			return true, nil
		}
	}
	v, err := c.prog.run(env)
	if err != nil {
		return false, err
	}
	return truthy(v), nil
}

// UsesStatusFunction reports whether the condition calls success(),
// failure(), always() or cancelled().
func (c *Condition) UsesStatusFunction() bool { return c.prog != nil && c.prog.status != 0 }

// RunsWhenCancelled reports whether the condition calls always() or
// cancelled(): such units are still started while a run is being cancelled
// (cleanup, notifications); all others are skipped without evaluation.
func (c *Condition) RunsWhenCancelled() bool {
	return c.prog != nil && c.prog.status&(useAlways|useCancelled) != 0
}

// String returns the source of the condition.
func (c *Condition) String() string { return c.src }

// PathError is a problem in one string of a structured value (see CheckAny).
type PathError struct {
	Path string // e.g. "ref", "env.HOME", "files[2]", "" for v itself
	Err  *Error // Offset is relative to that string
}

func (e PathError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

// CheckAny parses every string inside v (maps, slices, nested) as a template
// and returns the parse and Check errors with the path of the string: map
// keys joined by ".", slice indexes as "[i]". Map keys are visited in sorted
// order so the result is stable.
func CheckAny(v any, s Scope) []PathError {
	var out []PathError
	walkStrings(reflect.ValueOf(v), "", func(path, str string) {
		if !strings.Contains(str, "${{") {
			return
		}
		t, err := parseCached(str)
		if err != nil {
			out = append(out, PathError{Path: path, Err: asError(err)})
			return
		}
		for _, e := range t.Check(s) {
			out = append(out, PathError{Path: path, Err: asError(e)})
		}
	})
	return out
}

func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Msg: err.Error()}
}

func walkStrings(v reflect.Value, path string, fn func(path, s string)) {
	if !v.IsValid() {
		return
	}
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if !v.IsNil() {
			walkStrings(v.Elem(), path, fn)
		}
	case reflect.String:
		fn(path, v.String())
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // []byte is data, not text to evaluate
		}
		for i := 0; i < v.Len(); i++ {
			walkStrings(v.Index(i), path+"["+strconv.Itoa(i)+"]", fn)
		}
	case reflect.Map:
		keys := v.MapKeys()
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = fmt.Sprint(k.Interface())
		}
		idx := make([]int, len(keys))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return names[idx[a]] < names[idx[b]] })
		for _, i := range idx {
			p := names[i]
			if path != "" {
				p = path + "." + p
			}
			walkStrings(v.MapIndex(keys[i]), p, fn)
		}
	}
}

// EvalAny evaluates the templates in every string inside v (maps, slices,
// nested) and returns a copy; v is not modified. A string that is exactly
// one ${{ }} segment keeps the type of its value (so args can receive
// numbers, lists and maps). Maps come back as map[string]any and slices as
// []any; other values are returned as they are.
func EvalAny(v any, env *Env) (any, error) {
	return evalAny(reflect.ValueOf(v), "", env)
}

func evalAny(v reflect.Value, path string, env *Env) (any, error) {
	if !v.IsValid() {
		return nil, nil
	}
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return v.Interface(), nil
		}
		if v.Kind() == reflect.Pointer {
			return v.Interface(), nil
		}
		return evalAny(v.Elem(), path, env)
	case reflect.String:
		s := v.String()
		if !strings.Contains(s, "${{") {
			return v.Interface(), nil
		}
		t, err := parseCached(s)
		if err != nil {
			return nil, wrapPath(path, err)
		}
		out, err := t.EvalValue(env)
		if err != nil {
			return nil, wrapPath(path, err)
		}
		return out, nil
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Interface(), nil
		}
		if v.Kind() == reflect.Slice && v.IsNil() {
			return v.Interface(), nil
		}
		out := make([]any, v.Len())
		for i := range out {
			e, err := evalAny(v.Index(i), path+"["+strconv.Itoa(i)+"]", env)
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case reflect.Map:
		if v.IsNil() {
			return v.Interface(), nil
		}
		out := make(map[string]any, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			k := fmt.Sprint(iter.Key().Interface())
			p := k
			if path != "" {
				p = path + "." + k
			}
			e, err := evalAny(iter.Value(), p, env)
			if err != nil {
				return nil, err
			}
			out[k] = e
		}
		return out, nil
	}
	return v.Interface(), nil
}

func wrapPath(path string, err error) error {
	if path == "" {
		return err
	}
	return &PathError{Path: path, Err: asError(err)}
}

// parseCached parses templates for EvalAny and CheckAny. Step args are
// evaluated for every run with the same strings, so compiled templates are
// kept; the cache is dropped when it grows past a bound, which only costs
// recompilation.
func parseCached(s string) (*Template, error) {
	if v, ok := tplCache.Load(s); ok {
		e := v.(cacheEntry)
		return e.t, e.err
	}
	t, err := ParseTemplate(s)
	if tplCacheLen.Add(1) > tplCacheMax {
		tplCache.Clear()
		tplCacheLen.Store(1)
	}
	tplCache.Store(s, cacheEntry{t, err})
	return t, err
}

type cacheEntry struct {
	t   *Template
	err error
}

const tplCacheMax = 4096

var (
	tplCache    sync.Map
	tplCacheLen atomic.Int64
)

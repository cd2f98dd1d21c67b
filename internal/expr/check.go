package expr

import (
	"fmt"
	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/textdist"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/parser/utils"
)

// Error is a problem in an expression, at a byte offset of the source string.
type Error struct {
	Offset int
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("offset %d: %s", e.Offset, e.Msg) }

// Scope says which contexts a field may use and which names exist in them.
type Scope struct {
	Contexts        []string // allowed top-level context names; a name not listed is an error (nil: none)
	Variables       []string // declared variable names; nil = any name accepted
	MatrixAxes      []string // nil = any
	Steps           []string // steps that run before this one in the same job; nil = any
	Needs           []string // jobs this job needs; nil = any
	StatusFunctions bool     // success()/failure()/always()/cancelled() allowed (only `if` fields)
}

// allContexts is every context an expression can name, in the order used in
// messages.
var allContexts = []string{"trigger", "variables", "env", "matrix", "pipeline", "run", "job", "steps", "needs", "secrets"}

// AllContexts returns the names of every context, for a Scope that allows all.
func AllContexts() []string { return slices.Clone(allContexts) }

// structFields are the fields of the struct-typed contexts, from their expr
// tags, so the lists in messages cannot drift from env.go.
var structFields = map[string][]string{
	"trigger":  exprFields(runnel.Trigger{}),
	"pipeline": exprFields(Pipeline{}),
	"run":      exprFields(Run{}),
	"job":      exprFields(Job{}),
}

var (
	stepFields = exprFields(StepResult{})
	needFields = exprFields(NeedResult{})
)

func exprFields(v any) []string {
	t := reflect.TypeOf(v)
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("expr")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

// functionNames are the names users can call: ours and expr-lang's builtins.
var functionNames = func() []string {
	out := slices.Clone(userFunctions)
	for _, b := range builtin.Builtins {
		if !slices.Contains(out, b.Name) {
			out = append(out, b.Name)
		}
	}
	return out
}()

func isContext(name string) bool  { return slices.Contains(allContexts, name) }
func isFunction(name string) bool { return slices.Contains(functionNames, name) }
func isInternalFunction(name string) bool {
	return name == fnContains || name == fnStartsWith || name == fnEndsWith
}

func inList(list []string, name string) bool { return slices.Contains(list, name) }

func contextNotAvailable(name string, s *Scope) string {
	if name == "secrets" {
		// Secrets reach steps only through the environment: a script's text
		// or a path could end up on a command line or in a file name.
		return `secrets can only be used in env and args; put the value in env (e.g. env: {TOKEN: "${{ secrets.TOKEN }}"}) and read $TOKEN`
	}
	if len(s.Contexts) == 0 {
		return fmt.Sprintf("the %s context is not available here; no context can be used in this field", name)
	}
	return fmt.Sprintf("the %s context is not available here; available: %s", name, strings.Join(s.Contexts, ", "))
}

func unknownName(name string, s *Scope) string {
	ctxs := allContexts
	if s != nil {
		ctxs = s.Contexts
	}
	var b strings.Builder
	fmt.Fprintf(&b, "unknown name %q; ", name)
	if len(ctxs) == 0 {
		b.WriteString("no context can be used in this field")
	} else {
		fmt.Fprintf(&b, "expressions can use %s", strings.Join(ctxs, ", "))
	}
	b.WriteString(`, functions, and quoted strings ('text')`)
	// Suggest the allowed contexts first, then any context or function.
	sugg := didYouMean(name, ctxs)
	if sugg == "" {
		sugg = didYouMean(name, append(slices.Clone(allContexts), functionNames...))
	}
	b.WriteString(sugg)
	return b.String()
}

func unknownFunction(name string) string {
	return fmt.Sprintf("unknown function %q; functions: %s, and the expr-lang builtins (len, lower, upper, trim, split, …)%s",
		name, strings.Join(userFunctions, ", "), didYouMean(name, functionNames))
}

func unknownField(ctx, key string, fields []string) string {
	return fmt.Sprintf("%s has no field %q; fields: %s%s%s", ctx, key, strings.Join(fields, ", "), didYouMean(key, fields), dashHint(key))
}

// dashHint explains the dashed-name rule when it is the likely cause.
func dashHint(key string) string {
	if !strings.Contains(key, "-") {
		return ""
	}
	return `; a "-" written right after a member name is part of the name: write "a - b" to subtract`
}

// memberPath renders ctx.key, or ctx["key"] when key is not a plain name
// (dashed names are shown dotted, as users write them).
func memberPath(ctx, key string) string {
	plain := key != ""
	for i, r := range key {
		if !(utils.IsAlphaNumeric(r) || (r == '-' && i > 0)) {
			plain = false
			break
		}
	}
	if plain {
		return ctx + "." + key
	}
	return ctx + "[" + strconv.Quote(key) + "]"
}

func listOr(prefix string, list []string, empty string) string {
	if len(list) == 0 {
		return empty
	}
	return prefix + strings.Join(list, ", ")
}

// didYouMean suggests the closest candidate within edit distance 2 (and
// closer than the length of the name, so "x" does not suggest "env").
func didYouMean(name string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if c == name {
			continue
		}
		if d := textdist.Levenshtein(name, c); d < bestD && d < len([]rune(name)) {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// check returns the errors of the program under s, in source order.
func (p *program) check(s *Scope) []error {
	var out []error
	for _, is := range p.issues {
		if msg := is.msg(s); msg != "" {
			out = append(out, &Error{Offset: is.off, Msg: msg})
		}
	}
	return out
}

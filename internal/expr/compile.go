package expr

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	exprlang "github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// statusUse records which status functions an expression calls.
type statusUse uint8

const (
	useSuccess statusUse = 1 << iota
	useFailure
	useAlways
	useCancelled
)

var statusBits = map[string]statusUse{
	"success": useSuccess, "failure": useFailure, "always": useAlways, "cancelled": useCancelled,
}

// program is one compiled expression (the inside of one ${{ … }}).
type program struct {
	src  string // the expression as written
	off  int    // byte offset of src in the owner's source string
	code string // src after rewriteExpr, what expr-lang compiled
	m    *offsetMap

	runeStart []int // byte offset of each rune of code; nil when code is ASCII

	prog   *vm.Program // nil when fatal is set
	issues []issue     // everything Check has to judge, found once at parse time
	fatal  *Error      // first problem that does not depend on the Scope
	status statusUse
}

// issue is a finding of the analysis. Static issues are errors whatever the
// scope (unknown names, unknown fields); the others depend on the Scope of the
// field (which contexts, variables, steps… exist there), so their message is
// computed by Check. msg returns "" when the scope allows the expression.
type issue struct {
	off    int
	static bool
	msg    func(s *Scope) string
}

var funcOpts = functionOptions()

// Limits that keep hostile pipeline files from exhausting the stack of the
// recursive-descent parser (a Go stack overflow cannot be recovered).
const (
	maxExprLen = 64 << 10
	maxDepth   = 256 // nesting of ( [ {
)

// newConfig builds a fresh expr-lang configuration. Configs carry a type
// cache that is not safe for concurrent use, so each compilation gets its own.
//
// The environment is the typed *Env, so expr-lang checks types at compile
// time (variables.x is a string, run.number an int64, steps.x.outputs a map
// of strings…) and reads fields by index at run time.
// configs holds compiler configurations for reuse: building one (every
// builtin into its tables, the environment's type described) was 40 % of
// parsing a large definition. A compilation reads its configuration and adds
// to its cache of type descriptions only, so one can serve compilation after
// compilation, one at a time.
var configs = sync.Pool{New: func() any { return newConfig() }}

func newConfig() *conf.Config {
	c := conf.CreateNew()
	exprlang.Env(&Env{})(c)
	for _, o := range funcOpts {
		o(c)
	}
	return c
}

// compile turns one expression into a program. Syntax and type errors are
// returned; name problems are recorded in the program (see issue) so that
// Check can report all of them with the field's Scope.
func compile(src string, off int) (p *program, err *Error) {
	if len(src) > maxExprLen {
		return nil, &Error{Offset: off, Msg: fmt.Sprintf("expression is too long (%d bytes, the limit is %d); compute large values in a step", len(src), maxExprLen)}
	}
	code, m, rerr := rewriteExpr(src)
	if rerr != nil {
		rerr.Offset += off
		return nil, rerr
	}
	p = &program{src: src, off: off, code: code, m: m, runeStart: runeStarts(code)}
	config := configs.Get().(*conf.Config)
	defer func() {
		// expr-lang is not supposed to panic on bad input; if it does, the
		// user still gets an error instead of a crashed server (and the
		// configuration, which it may have left half-updated, is dropped).
		if r := recover(); r != nil {
			p, err = nil, &Error{Offset: off, Msg: fmt.Sprintf("cannot compile expression: %v", r)}
			return
		}
		configs.Put(config)
	}()
	tree, perr := parser.ParseWithConfig(code, config)
	if perr != nil {
		return nil, p.syntaxError(perr)
	}
	a := analyzer{p: p, lets: map[string]bool{}}
	a.walk(tree.Node)
	p.issues = a.issues
	for _, is := range p.issues {
		if is.static {
			p.fatal = &Error{Offset: is.off, Msg: is.msg(nil)}
			return p, nil
		}
	}
	patchStatus(&tree.Node)
	if _, cerr := checker.Check(tree, config); cerr != nil {
		return nil, p.exprError(cerr)
	}
	nilSafe(&tree.Node, false)
	if config.Optimize {
		if oerr := optimizer.Optimize(&tree.Node, config); oerr != nil {
			return nil, p.exprError(oerr)
		}
	}
	prog, cerr := compiler.Compile(tree, config)
	if cerr != nil {
		return nil, p.exprError(cerr)
	}
	p.prog = prog
	return p, nil
}

// vms are reused between evaluations: a VM keeps its stack, and allocating
// a new one per evaluation is a large share of the cost of a small expression.
var vms = sync.Pool{New: func() any { return new(vm.VM) }}

var emptyEnv = &Env{}

func (p *program) run(env *Env) (any, error) {
	if p.fatal != nil {
		return nil, p.fatal
	}
	if env == nil {
		env = emptyEnv
	}
	v := vms.Get().(*vm.VM)
	out, err := v.Run(p.prog, env)
	vms.Put(v)
	if err != nil {
		return nil, p.exprError(err)
	}
	return out, nil
}

// exprError converts an expr-lang error (positions in runes of the rewritten
// code) to an *Error at a byte offset of the original source.
func (p *program) exprError(err error) *Error {
	var fe *file.Error
	if errors.As(err, &fe) {
		msg := internalNames.Replace(fe.Message)
		if strings.Contains(msg, "mismatched types") && strings.Contains(msg, "string") {
			msg += "; variables, env, secrets and outputs are strings: convert with int(…) or float(…), or compare with a quoted string"
		}
		return &Error{Offset: p.orig(fe.From), Msg: msg}
	}
	return &Error{Offset: p.off, Msg: internalNames.Replace(err.Error())}
}

// syntaxError is exprError for the parser, with its messages phrased for
// pipeline authors.
func (p *program) syntaxError(err error) *Error {
	e := p.exprError(err)
	msg := strings.NewReplacer(
		"unexpected token EOF", "unexpected end of expression",
		"literal not terminated", "string literal not terminated",
	).Replace(e.Msg)
	if strings.Contains(msg, `Operator("=")`) {
		msg += "; compare with ==, there is no assignment"
	}
	if !strings.HasPrefix(msg, "compilation failed") {
		msg = "syntax error: " + msg
	}
	e.Msg = msg
	return e
}

// orig maps a rune position of p.code (expr-lang counts runes) to a byte
// offset of the owner's source.
func (p *program) orig(runePos int) int {
	b := runePos
	if p.runeStart != nil {
		if runePos >= 0 && runePos < len(p.runeStart) {
			b = p.runeStart[runePos]
		} else {
			b = len(p.code)
		}
	}
	return p.off + p.m.orig(min(max(b, 0), len(p.code)))
}

// runeStarts returns the byte offset of each rune of s, or nil when s is
// ASCII and rune positions are byte offsets. It is computed once per
// expression, before any concurrent use: expressions can have thousands of
// nodes to locate.
func runeStarts(s string) []int {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return nil
	}
	out := make([]int, 0, len(s))
	for i := 0; i < len(s); {
		out = append(out, i)
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return out
}

func (p *program) nodeOffset(n ast.Node) int { return p.orig(n.Location().From) }

// children returns pointers to the child nodes of n, for the walks below.
func children(n ast.Node) []*ast.Node {
	switch n := n.(type) {
	case *ast.UnaryNode:
		return []*ast.Node{&n.Node}
	case *ast.BinaryNode:
		return []*ast.Node{&n.Left, &n.Right}
	case *ast.ChainNode:
		return []*ast.Node{&n.Node}
	case *ast.MemberNode:
		return []*ast.Node{&n.Node, &n.Property}
	case *ast.SliceNode:
		out := []*ast.Node{&n.Node}
		if n.From != nil {
			out = append(out, &n.From)
		}
		if n.To != nil {
			out = append(out, &n.To)
		}
		return out
	case *ast.CallNode:
		out := []*ast.Node{&n.Callee}
		for i := range n.Arguments {
			out = append(out, &n.Arguments[i])
		}
		return out
	case *ast.BuiltinNode:
		out := make([]*ast.Node, 0, len(n.Arguments))
		for i := range n.Arguments {
			out = append(out, &n.Arguments[i])
		}
		return out
	case *ast.PredicateNode:
		return []*ast.Node{&n.Node}
	case *ast.VariableDeclaratorNode:
		return []*ast.Node{&n.Value, &n.Expr}
	case *ast.SequenceNode:
		out := make([]*ast.Node, 0, len(n.Nodes))
		for i := range n.Nodes {
			out = append(out, &n.Nodes[i])
		}
		return out
	case *ast.ConditionalNode:
		return []*ast.Node{&n.Cond, &n.Exp1, &n.Exp2}
	case *ast.ArrayNode:
		out := make([]*ast.Node, 0, len(n.Nodes))
		for i := range n.Nodes {
			out = append(out, &n.Nodes[i])
		}
		return out
	case *ast.MapNode:
		out := make([]*ast.Node, 0, len(n.Pairs))
		for i := range n.Pairs {
			out = append(out, &n.Pairs[i])
		}
		return out
	case *ast.PairNode:
		return []*ast.Node{&n.Key, &n.Value}
	}
	return nil
}

// patchStatus turns success(), failure(), always(), cancelled() into
// __success($env) …, so they read the Status of the Env being evaluated (see
// functionOptions). It runs before expr-lang's type check.
func patchStatus(node *ast.Node) {
	if n, ok := (*node).(*ast.CallNode); ok {
		if id, ok := n.Callee.(*ast.IdentifierNode); ok {
			fn, isStatus := statusFunctions[id.Value]
			if id.Value == "hashFiles" {
				fn = fnHashFiles
			}
			if (isStatus && len(n.Arguments) == 0) || id.Value == "hashFiles" {
				callee := &ast.IdentifierNode{Value: fn}
				callee.SetLocation(id.Location())
				env := &ast.IdentifierNode{Value: "$env"}
				env.SetLocation(id.Location())
				n.Callee = callee
				n.Arguments = append([]ast.Node{env}, n.Arguments...)
			}
		}
	}
	for _, c := range children(*node) {
		patchStatus(c)
	}
}

// nilSafe makes member access on dynamically typed values nil-safe, as if
// written a?.b: matrix.missing.field and fromJSON(x).missing.field are nil
// instead of a run-time error ("cannot fetch field from <nil>"). It runs after
// the type check, because only values of unknown type (matrix values,
// fromJSON results…) need it: typed maps already yield the zero value for a
// missing key (steps.x.outputs.missing is ""), and struct fields are plain
// loads that expr-lang fuses into one indexed access.
//
// chained says that the node is the base of a member access already inside
// a nil-safe chain, so it must not open a chain of its own.
func nilSafe(node *ast.Node, chained bool) {
	switch n := (*node).(type) {
	case *ast.ChainNode:
		nilSafe(&n.Node, true)
		return
	case *ast.MemberNode:
		if !n.Method && !n.Optional && isDynamic(n.Node) {
			n.Optional = true
		}
		nilSafe(&n.Node, n.Optional)
		nilSafe(&n.Property, false)
		if n.Optional && !chained {
			c := &ast.ChainNode{Node: n}
			c.SetLocation(n.Location())
			c.SetNature(*n.Nature())
			*node = c
		}
		return
	}
	for _, c := range children(*node) {
		nilSafe(c, false)
	}
}

func isDynamic(n ast.Node) bool {
	nt := n.Nature()
	return nt.Type == nil || nt.Kind == reflect.Interface
}

// analyzer walks a parsed (not yet patched) expression and records issues.
type analyzer struct {
	p      *program
	lets   map[string]bool // names bound by let: not contexts
	issues []issue
}

func (a *analyzer) add(n ast.Node, static bool, msg func(s *Scope) string) {
	a.issues = append(a.issues, issue{off: a.p.nodeOffset(n), static: static, msg: msg})
}

func (a *analyzer) walk(n ast.Node) {
	switch n := n.(type) {
	case nil:
		return
	case *ast.IdentifierNode:
		a.ident(n)
		return
	case *ast.MemberNode:
		a.member(n)
		return
	case *ast.CallNode:
		a.call(n)
		return
	case *ast.VariableDeclaratorNode:
		a.walk(n.Value)
		a.lets[n.Name] = true
		a.walk(n.Expr)
		return
	}
	for _, c := range children(n) {
		a.walk(*c)
	}
}

// ident judges a name used as a value.
func (a *analyzer) ident(id *ast.IdentifierNode) {
	name := id.Value
	switch {
	case a.lets[name]:
	case isContext(name):
		a.add(id, false, func(s *Scope) string {
			if inList(s.Contexts, name) {
				return ""
			}
			return contextNotAvailable(name, s)
		})
	case isFunction(name):
		a.add(id, true, func(*Scope) string {
			return fmt.Sprintf("%s is a function; call it as %s(…)", name, name)
		})
	default:
		a.add(id, true, func(s *Scope) string { return unknownName(name, s) })
	}
}

// member judges a member chain such as steps.build.outputs.bin: the context
// at its root, and the constant keys under it.
func (a *analyzer) member(n *ast.MemberNode) {
	var props []ast.Node // outermost first
	var cur ast.Node = n
loop:
	for {
		switch c := cur.(type) {
		case *ast.MemberNode:
			props = append(props, c.Property)
			cur = c.Node
		case *ast.ChainNode:
			cur = c.Node
		default:
			break loop
		}
	}
	for i, j := 0, len(props)-1; i < j; i, j = i+1, j-1 {
		props[i], props[j] = props[j], props[i]
	}
	id, ok := cur.(*ast.IdentifierNode)
	if ok && isContext(id.Value) && !a.lets[id.Value] {
		a.ident(id)
		a.keys(id.Value, props)
	} else {
		a.walk(cur)
	}
	for _, p := range props {
		if _, ok := p.(*ast.StringNode); !ok {
			a.walk(p)
		}
	}
}

// keys judges ctx.key and ctx.key.field against the scope and the shape of
// the context.
func (a *analyzer) keys(ctx string, props []ast.Node) {
	if len(props) == 0 {
		return
	}
	k, ok := props[0].(*ast.StringNode)
	if !ok {
		return
	}
	key := k.Value
	if fields, ok := structFields[ctx]; ok {
		if !inList(fields, key) {
			a.add(k, true, func(*Scope) string { return unknownField(ctx, key, fields) })
		}
		return
	}
	switch ctx {
	case "variables":
		a.add(k, false, func(s *Scope) string {
			if s.Variables == nil || inList(s.Variables, key) {
				return ""
			}
			return fmt.Sprintf("%s is not declared (%s)%s", memberPath(ctx, key),
				listOr("declared variables: ", s.Variables, "no variables are declared"), didYouMean(key, s.Variables))
		})
	case "matrix":
		a.add(k, false, func(s *Scope) string {
			if s.MatrixAxes == nil || inList(s.MatrixAxes, key) {
				return ""
			}
			return fmt.Sprintf("%s is not a matrix axis of this job (%s)%s", memberPath(ctx, key),
				listOr("axes: ", s.MatrixAxes, "this job has no matrix"), didYouMean(key, s.MatrixAxes))
		})
	case "steps":
		a.add(k, false, func(s *Scope) string {
			if s.Steps == nil || inList(s.Steps, key) {
				return ""
			}
			return fmt.Sprintf("%s: no step named %q runs before this step (%s)%s", memberPath(ctx, key), key,
				listOr("earlier steps: ", s.Steps, "no step runs before this one"), didYouMean(key, s.Steps))
		})
	case "needs":
		a.add(k, false, func(s *Scope) string {
			if s.Needs == nil || inList(s.Needs, key) {
				return ""
			}
			return fmt.Sprintf("%s: this job does not need a job named %q; add it to needs to use its results (%s)%s",
				memberPath(ctx, key), key, listOr("needs: ", s.Needs, "this job needs no job"), didYouMean(key, s.Needs))
		})
	}
	if len(props) < 2 {
		return
	}
	f, ok := props[1].(*ast.StringNode)
	if !ok {
		return
	}
	var allowed []string
	var what string
	switch ctx {
	case "steps":
		allowed, what = stepFields, "a step has"
	case "needs":
		allowed, what = needFields, "a needed job has"
	default:
		return
	}
	if !inList(allowed, f.Value) {
		field := f.Value
		a.add(f, true, func(*Scope) string {
			return fmt.Sprintf("%s: %s only %s%s", memberPath(memberPath(ctx, key), field), what,
				strings.Join(allowed, " and "), didYouMean(field, allowed)+dashHint(field))
		})
	}
}

// call judges a function call.
func (a *analyzer) call(n *ast.CallNode) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok {
		a.walk(n.Callee)
	} else {
		name := id.Value
		switch {
		case statusBits[name] != 0 && !a.lets[name]:
			a.p.status |= statusBits[name]
			a.add(id, false, func(s *Scope) string {
				if s.StatusFunctions {
					return ""
				}
				return fmt.Sprintf(`%s() can only be used in an "if" condition`, name)
			})
			if len(n.Arguments) > 0 {
				a.add(id, true, func(*Scope) string { return fmt.Sprintf("%s() takes no arguments", name) })
			}
		case a.lets[name]:
		case isFunction(name) || isInternalFunction(name):
			if name == "format" && len(n.Arguments) > 0 {
				if f, ok := n.Arguments[0].(*ast.StringNode); ok {
					if err := scanFormat(f.Value, len(n.Arguments)-1, func(string, int) error { return nil }); err != nil {
						a.add(f, true, func(*Scope) string { return "format: " + err.Error() })
					}
				}
			}
		case isContext(name):
			a.add(id, true, func(*Scope) string {
				return fmt.Sprintf("%s is a context, not a function; use %s.<name>", name, name)
			})
		default:
			a.add(id, true, func(*Scope) string { return unknownFunction(name) })
		}
	}
	for _, arg := range n.Arguments {
		a.walk(arg)
	}
}

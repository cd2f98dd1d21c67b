package spec

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Pos is a position in a definition file, 1-based.
type Pos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// kind of a generic node.
type kind int

const (
	kindNull kind = iota
	kindString
	kindInt
	kindFloat
	kindBool
	kindMap
	kindSeq
)

func (k kind) String() string {
	switch k {
	case kindNull:
		return "null"
	case kindString:
		return "a string"
	case kindInt:
		return "an integer"
	case kindFloat:
		return "a number"
	case kindBool:
		return "a boolean"
	case kindMap:
		return "a mapping"
	case kindSeq:
		return "a list"
	}
	return "a value"
}

// node is a YAML/JSON value with its position, independent of the parser.
// Aliases and merge keys are already resolved.
type node struct {
	kind  kind
	pos   Pos
	text  string // scalar text as written (after YAML unquoting)
	i     int64
	f     float64
	b     bool
	keys  []*node // mapping keys (scalars), in order
	vals  []*node // mapping values or sequence items
	style byte    // strings: 'p' plain, 'q' quoted, 'b' block scalar (| or >)
	body  int     // block scalars: the line where the content starts
}

// Limits that keep hostile input from exhausting memory or the stack.
const (
	// MaxFileSize is the largest definition accepted.
	MaxFileSize = 4 << 20
	// maxFlowDepth bounds [ { nesting, checked on tokens before parsing.
	maxFlowDepth = 64
	// maxDepth bounds nesting of the resolved document.
	maxDepth = 100
	// maxNodes bounds the resolved document (alias expansion included).
	maxNodes = 2_000_000
)

type converter struct {
	anchors map[string]ast.Node
	nodes   int
	err     error
}

// parseDocument parses YAML (or JSON, a subset of YAML) into a node tree.
// It returns a positioned error for syntax errors.
func parseDocument(data []byte) (root *node, err error) {
	defer func() {
		// The parser is a third-party component fed with untrusted input: a panic
		// in it must become an error, not a crash of the server.
		if r := recover(); r != nil {
			root, err = nil, &Error{Msg: fmt.Sprintf("cannot parse the document: %v", r)}
		}
	}()
	tokens := lexer.Tokenize(string(data))
	depth := 0
	for _, tk := range tokens {
		switch tk.Type {
		case token.SequenceStartType, token.MappingStartType:
			depth++
			if depth > maxFlowDepth {
				return nil, &Error{Pos: tokPos(tk), Msg: fmt.Sprintf("nesting deeper than %d levels of [ ] or { } is not accepted", maxFlowDepth)}
			}
		case token.SequenceEndType, token.MappingEndType:
			if depth > 0 {
				depth--
			}
		case token.InvalidType:
			return nil, &Error{Pos: tokPos(tk), Msg: "invalid YAML: " + invalidMsg(tk)}
		}
	}
	file, perr := parser.Parse(tokens, 0)
	if perr != nil {
		return nil, yamlError(perr)
	}
	var docs []*ast.DocumentNode
	for _, d := range file.Docs {
		if d != nil && d.Body != nil {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		return nil, &Error{Pos: Pos{1, 1}, Msg: "the document is empty; a pipeline needs at least namespace and jobs or stages"}
	}
	if len(docs) > 1 {
		return nil, &Error{Pos: nodePos(docs[1].Body), Msg: "a definition holds one YAML document; remove the second document (after ---)"}
	}
	c := &converter{anchors: map[string]ast.Node{}}
	root = c.convert(docs[0].Body, 0)
	if c.err != nil {
		return nil, c.err
	}
	return root, nil
}

func invalidMsg(tk *token.Token) string {
	if tk.Error != "" {
		return tk.Error
	}
	return fmt.Sprintf("unexpected %q", tk.Value)
}

func tokPos(tk *token.Token) Pos {
	if tk == nil || tk.Position == nil {
		return Pos{}
	}
	return Pos{Line: tk.Position.Line, Column: tk.Position.Column}
}

func nodePos(n ast.Node) Pos {
	if n == nil {
		return Pos{}
	}
	return tokPos(n.GetToken())
}

// yamlError turns a goccy error into a positioned Error with a one-line message.
func yamlError(err error) *Error {
	type tokenErr interface{ GetToken() *token.Token }
	type msgErr interface{ GetMessage() string }
	e := &Error{Msg: "invalid YAML: " + firstLine(err.Error())}
	if te, ok := err.(tokenErr); ok {
		e.Pos = tokPos(te.GetToken())
	}
	if me, ok := err.(msgErr); ok {
		e.Msg = "invalid YAML: " + me.GetMessage()
	}
	return e
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	// goccy prefixes "[line:col] "; the position is reported separately.
	if strings.HasPrefix(s, "[") {
		if i := strings.Index(s, "] "); i > 0 {
			s = s[i+2:]
		}
	}
	return s
}

func (c *converter) fail(n ast.Node, format string, args ...any) *node {
	if c.err == nil {
		c.err = &Error{Pos: nodePos(n), Msg: fmt.Sprintf(format, args...)}
	}
	return &node{kind: kindNull, pos: nodePos(n)}
}

func (c *converter) convert(n ast.Node, depth int) *node {
	if c.err != nil {
		return &node{}
	}
	c.nodes++
	if c.nodes > maxNodes {
		return c.fail(n, "the document expands to more than %d values (aliases included)", maxNodes)
	}
	if depth > maxDepth {
		return c.fail(n, "nesting deeper than %d levels is not accepted", maxDepth)
	}
	pos := nodePos(n)
	switch v := n.(type) {
	case nil:
		return &node{kind: kindNull}
	case *ast.NullNode:
		return &node{kind: kindNull, pos: pos}
	case *ast.StringNode:
		style := byte('p')
		if t := v.GetToken().Type; t == token.SingleQuoteType || t == token.DoubleQuoteType {
			style = 'q'
		}
		return &node{kind: kindString, pos: pos, text: v.Value, style: style}
	case *ast.LiteralNode:
		return &node{kind: kindString, pos: pos, text: v.Value.Value, style: 'b', body: tokPos(v.Start).Line + 1}
	case *ast.IntegerNode:
		out := &node{kind: kindInt, pos: pos, text: v.GetToken().Value}
		switch iv := v.Value.(type) {
		case int64:
			out.i = iv
		case uint64:
			if iv > math.MaxInt64 {
				return c.fail(n, "integer %s is too large", out.text)
			}
			out.i = int64(iv)
		}
		return out
	case *ast.FloatNode:
		return &node{kind: kindFloat, pos: pos, f: v.Value, text: v.GetToken().Value}
	case *ast.InfinityNode:
		return &node{kind: kindFloat, pos: pos, f: v.Value, text: v.GetToken().Value}
	case *ast.NanNode:
		return &node{kind: kindFloat, pos: pos, f: math.NaN(), text: v.GetToken().Value}
	case *ast.BoolNode:
		return &node{kind: kindBool, pos: pos, b: v.Value, text: v.GetToken().Value}
	case *ast.TagNode:
		return c.tagged(v, depth)
	case *ast.AnchorNode:
		name := ""
		if v.Name != nil {
			name = v.Name.String()
		}
		c.anchors[name] = v.Value
		return c.convert(v.Value, depth)
	case *ast.AliasNode:
		name := ""
		if v.Value != nil {
			name = v.Value.String()
		}
		target, ok := c.anchors[name]
		if !ok {
			return c.fail(n, "alias *%s refers to no anchor defined before it", name)
		}
		out := c.convert(target, depth+1)
		return out
	case *ast.MappingNode:
		out := &node{kind: kindMap, pos: pos}
		if len(v.Values) > 0 {
			out.pos = nodePos(v.Values[0].Key)
		}
		for _, mv := range v.Values {
			c.mappingValue(out, mv, depth)
		}
		return out
	case *ast.MappingValueNode:
		out := &node{kind: kindMap, pos: nodePos(v.Key)}
		c.mappingValue(out, v, depth)
		return out
	case *ast.SequenceNode:
		out := &node{kind: kindSeq, pos: pos}
		for _, item := range v.Values {
			out.vals = append(out.vals, c.convert(item, depth+1))
		}
		return out
	case *ast.CommentGroupNode, *ast.CommentNode:
		return &node{kind: kindNull, pos: pos}
	default:
		return c.fail(n, "unsupported YAML construct (%s)", n.Type())
	}
}

func (c *converter) tagged(v *ast.TagNode, depth int) *node {
	inner := c.convert(v.Value, depth)
	tag := v.Start.Value
	switch tag {
	case "!!str":
		if inner.kind == kindMap || inner.kind == kindSeq {
			return c.fail(v, "tag !!str on %s", inner.kind)
		}
		inner.kind = kindString
	case "!!int", "!!float", "!!bool", "!!null", "!!map", "!!seq", "!!binary", "!!timestamp":
		// The value already has the type the tag names (or a compatible one).
	default:
		return c.fail(v, "unknown YAML tag %s", tag)
	}
	return inner
}

func (c *converter) mappingValue(out *node, mv *ast.MappingValueNode, depth int) {
	if c.err != nil {
		return
	}
	if mv.Key != nil && mv.Key.IsMergeKey() {
		src := c.convert(mv.Value, depth+1)
		var sources []*node
		switch src.kind {
		case kindMap:
			sources = []*node{src}
		case kindSeq:
			sources = src.vals
		default:
			c.fail(mv.Value, "the merge key << needs a mapping or a list of mappings")
			return
		}
		for _, s := range sources {
			if s.kind != kindMap {
				c.fail(mv.Value, "the merge key << needs a mapping or a list of mappings")
				return
			}
			for i, k := range s.keys {
				if out.index(k.text) < 0 { // explicit keys win over merged ones
					out.keys = append(out.keys, k)
					out.vals = append(out.vals, s.vals[i])
				}
			}
		}
		return
	}
	var keyNode ast.Node = mv.Key
	if mk, ok := mv.Key.(*ast.MappingKeyNode); ok {
		keyNode = mk.Value
	}
	key := c.convert(keyNode, depth+1)
	switch key.kind {
	case kindMap, kindSeq:
		c.fail(keyNode, "a mapping key must be a scalar, not %s", key.kind)
		return
	case kindNull:
		key.text = ""
	}
	if key.kind != kindString && key.text == "" {
		key.text = scalarText(key)
	}
	key.kind = kindString
	out.keys = append(out.keys, key)
	out.vals = append(out.vals, c.convert(mv.Value, depth+1))
}

// index returns the position of key in a mapping node, or -1.
func (n *node) index(key string) int {
	for i, k := range n.keys {
		if k.text == key {
			return i
		}
	}
	return -1
}

// scalarText is the string form of a scalar as a user would expect it in a
// string field (YAML `FOO: 1` gives "1").
func scalarText(n *node) string {
	switch n.kind {
	case kindString:
		return n.text
	case kindInt:
		return strconv.FormatInt(n.i, 10)
	case kindFloat:
		if n.text != "" {
			return n.text
		}
		return strconv.FormatFloat(n.f, 'g', -1, 64)
	case kindBool:
		return strconv.FormatBool(n.b)
	}
	return ""
}

// generic converts a node into plain Go values: map[string]any, []any, string,
// int64, float64, bool or nil.
func (n *node) generic() any {
	switch n.kind {
	case kindNull:
		return nil
	case kindString:
		return n.text
	case kindInt:
		return n.i
	case kindFloat:
		return n.f
	case kindBool:
		return n.b
	case kindMap:
		m := make(map[string]any, len(n.keys))
		for i, k := range n.keys {
			m[k.text] = n.vals[i].generic()
		}
		return m
	case kindSeq:
		s := make([]any, len(n.vals))
		for i, v := range n.vals {
			s[i] = v.generic()
		}
		return s
	}
	return nil
}

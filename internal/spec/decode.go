package spec

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// decoder fills the typed definition from a node tree, collecting every error
// and the position of every value instead of stopping at the first problem.
type decoder struct {
	errs ErrorList
	pos  positions
	strs map[string]*node // string values by path, to place errors inside them
}

// nodeDecoder is implemented by types whose YAML form is not a plain struct,
// list or map (a duration string, "a string or a list", …).
type nodeDecoder interface {
	decodeNode(d *decoder, n *node, path string)
}

var nodeDecoderType = reflect.TypeFor[nodeDecoder]()

func (d *decoder) errorf(n *node, path, format string, args ...any) {
	e := &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Pos = n.pos
	}
	d.errs = append(d.errs, e)
}

func joinPath(base, field string) string {
	if base == "" {
		return field
	}
	return base + "." + field
}

func keyPath(base, key string) string {
	if simpleKey().MatchString(key) {
		return joinPath(base, key)
	}
	return base + "[" + strconv.Quote(key) + "]"
}

var simpleKey = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`) })

func indexPath(base string, i int) string { return base + "[" + strconv.Itoa(i) + "]" }

func (d *decoder) decode(n *node, v reflect.Value, path string) {
	d.pos[path] = n.pos
	if n.kind == kindString {
		d.strs[path] = n
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		v.Addr().Interface().(nodeDecoder).decodeNode(d, n, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.kind == kindNull {
			v.SetZero()
			return
		}
		nv := reflect.New(v.Type().Elem())
		d.decode(n, nv.Elem(), path)
		v.Set(nv)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.kind == kindNull {
			return
		}
		if n.kind != kindSeq {
			d.errorf(n, path, "expected a list, got %s", n.kind)
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.vals), len(n.vals))
		for i, item := range n.vals {
			d.decode(item, s.Index(i), indexPath(path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.kind == kindNull {
			return
		}
		if n.kind != kindMap {
			d.errorf(n, path, "expected a mapping, got %s", n.kind)
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.keys))
		seen := map[string]bool{}
		for i, k := range n.keys {
			kp := keyPath(path, k.text)
			if seen[k.text] {
				d.errorf(k, kp, "duplicate key %q", k.text)
				continue
			}
			seen[k.text] = true
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(n.vals[i], ev, kp)
			m.SetMapIndex(reflect.ValueOf(k.text).Convert(v.Type().Key()), ev)
		}
		v.Set(m)
	case reflect.String:
		switch n.kind {
		case kindMap, kindSeq:
			d.errorf(n, path, "expected a string, got %s", n.kind)
		default:
			v.SetString(scalarText(n))
		}
	case reflect.Bool:
		if n.kind != kindBool {
			d.errorf(n, path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(n.b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.kind != kindInt {
			d.errorf(n, path, "expected an integer, got %s", describe(n))
			return
		}
		if v.OverflowInt(n.i) {
			d.errorf(n, path, "integer %d is out of range", n.i)
			return
		}
		v.SetInt(n.i)
	case reflect.Interface:
		d.recordStrings(n, path)
		if g := n.generic(); g != nil {
			v.Set(reflect.ValueOf(g))
		}
	default:
		d.errorf(n, path, "cannot decode into %s", v.Type())
	}
}

func describe(n *node) string {
	switch n.kind {
	case kindMap, kindSeq, kindNull:
		return n.kind.String()
	}
	return fmt.Sprintf("%s %q", n.kind, scalarText(n))
}

type fieldInfo struct {
	name  string
	index int
}

var fieldCache sync.Map // reflect.Type → []fieldInfo

func fieldsOf(t reflect.Type) []fieldInfo {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]fieldInfo)
	}
	var fields []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" || name == "" {
			continue
		}
		fields = append(fields, fieldInfo{name: name, index: i})
	}
	fieldCache.Store(t, fields)
	return fields
}

func fieldNames(fields []fieldInfo) []string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return names
}

func (d *decoder) decodeStruct(n *node, v reflect.Value, path string) {
	if n.kind == kindNull {
		return
	}
	if n.kind != kindMap {
		d.errorf(n, path, "expected a mapping, got %s", n.kind)
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]bool{}
	for i, k := range n.keys {
		kp := keyPath(path, k.text)
		var fi *fieldInfo
		for j := range fields {
			if fields[j].name == k.text {
				fi = &fields[j]
				break
			}
		}
		if fi == nil {
			names := fieldNames(fields)
			d.errorf(k, kp, "unknown field %q%s; accepted fields: %s", k.text, didYouMean(k.text, names), quoteList(names))
			continue
		}
		if seen[k.text] {
			d.errorf(k, kp, "duplicate field %q", k.text)
			continue
		}
		seen[k.text] = true
		d.decode(n.vals[i], v.Field(fi.index), kp)
	}
}

// Duration is a length of time written with units: 30s, 10m, 1h30m.
type Duration time.Duration

func (x *Duration) decodeNode(d *decoder, n *node, path string) {
	switch n.kind {
	case kindNull:
		return
	case kindString:
		dur, err := time.ParseDuration(strings.TrimSpace(n.text))
		if err != nil {
			d.errorf(n, path, "invalid duration %q: write a number with a unit, e.g. 30s, 10m, 1h30m", n.text)
			return
		}
		if dur < 0 {
			d.errorf(n, path, "invalid duration %q: must not be negative", n.text)
			return
		}
		*x = Duration(dur)
	case kindInt, kindFloat:
		d.errorf(n, path, "invalid duration %s: add a unit, e.g. %ss or %sm", scalarText(n), scalarText(n), scalarText(n))
	default:
		d.errorf(n, path, "invalid duration: expected a string such as 10m, got %s", n.kind)
	}
}

// D returns the duration as a time.Duration.
func (x Duration) D() time.Duration { return time.Duration(x) }

// String formats the duration like time.Duration.
func (x Duration) String() string { return time.Duration(x).String() }

// MarshalJSON writes the duration as a string such as "10m0s".
func (x Duration) MarshalJSON() ([]byte, error) { return json.Marshal(x.String()) }

func (x *StringList) decodeNode(d *decoder, n *node, path string) {
	switch n.kind {
	case kindNull:
		return
	case kindString:
		*x = StringList{n.text}
	case kindSeq:
		out := make(StringList, 0, len(n.vals))
		for i, item := range n.vals {
			if item.kind != kindString {
				d.errorf(item, indexPath(path, i), "expected a string, got %s", describe(item))
				continue
			}
			d.pos[indexPath(path, i)] = item.pos
			out = append(out, item.text)
		}
		*x = out
	default:
		d.errorf(n, path, "expected a string or a list of strings, got %s", n.kind)
	}
}

var variableFields = []string{"default", "description", "required", "options"}

func (x *Variables) decodeNode(d *decoder, n *node, path string) {
	if n.kind == kindNull {
		return
	}
	if n.kind != kindMap {
		d.errorf(n, path, "expected a mapping of variable names to defaults, got %s", n.kind)
		return
	}
	seen := map[string]bool{}
	for i, k := range n.keys {
		kp := keyPath(path, k.text)
		d.pos[kp] = k.pos
		if seen[k.text] {
			d.errorf(k, kp, "duplicate variable %q", k.text)
			continue
		}
		seen[k.text] = true
		val := n.vals[i]
		v := Variable{Name: k.text}
		switch val.kind {
		case kindMap:
			type plain Variable
			var p plain
			d.decodeStruct(val, reflect.ValueOf(&p).Elem(), kp)
			v = Variable(p)
			v.Name = k.text
		case kindSeq:
			d.errorf(val, kp, "a variable is a default value or a mapping with %s; got a list", quoteList(variableFields))
		default:
			v.Default = scalarText(val)
		}
		*x = append(*x, v)
	}
}

// MarshalJSON keeps the declaration order.
func (x Variables) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range x {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(v.Name)
		type plain Variable
		val, err := json.Marshal(plain(v))
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// Lookup returns the declared variable with that name.
func (x Variables) Lookup(name string) (Variable, bool) {
	for _, v := range x {
		if v.Name == name {
			return v, true
		}
	}
	return Variable{}, false
}

// Names lists the declared variable names in order.
func (x Variables) Names() []string {
	names := make([]string, len(x))
	for i, v := range x {
		names[i] = v.Name
	}
	return names
}

func (x *RunsOn) decodeNode(d *decoder, n *node, path string) {
	switch n.kind {
	case kindString:
		x.Selectors = []string{n.text}
		d.pos[indexPath(path, 0)] = n.pos
	case kindSeq:
		var sl StringList
		sl.decodeNode(d, n, path)
		x.Selectors = sl
	case kindMap:
		d.decode(n, reflect.ValueOf(&x.Labels).Elem(), path)
	default:
		d.errorf(n, path, "expected a mapping of labels (pool: a) or a list of selectors (\"pool=a\", \"os in (linux,darwin)\"), got %s", n.kind)
	}
}

// MarshalJSON writes the form the definition used.
func (x RunsOn) MarshalJSON() ([]byte, error) {
	if x.Selectors != nil {
		return json.Marshal(x.Selectors)
	}
	return json.Marshal(x.Labels)
}

func (x *Matrix) decodeNode(d *decoder, n *node, path string) {
	if n.kind == kindNull {
		return
	}
	if n.kind != kindMap {
		d.errorf(n, path, "expected a mapping of axes (name: [values]) with optional include and exclude, got %s", n.kind)
		return
	}
	seen := map[string]bool{}
	for i, k := range n.keys {
		kp := keyPath(path, k.text)
		val := n.vals[i]
		d.pos[kp] = val.pos
		if seen[k.text] {
			d.errorf(k, kp, "duplicate key %q", k.text)
			continue
		}
		seen[k.text] = true
		switch k.text {
		case "include", "exclude":
			list := d.matrixEntries(val, kp)
			if k.text == "include" {
				x.Include = list
			} else {
				x.Exclude = list
			}
			continue
		}
		if val.kind != kindSeq {
			d.errorf(val, kp, "a matrix axis is a list of values, got %s", val.kind)
			continue
		}
		axis := MatrixAxis{Name: k.text}
		for j, item := range val.vals {
			if item.kind == kindMap || item.kind == kindSeq || item.kind == kindNull {
				d.errorf(item, indexPath(kp, j), "a matrix value is a string, number or boolean, got %s", item.kind)
				continue
			}
			axis.Values = append(axis.Values, item.generic())
		}
		x.Axes = append(x.Axes, axis)
	}
}

func (d *decoder) matrixEntries(n *node, path string) []map[string]any {
	if n.kind != kindSeq {
		d.errorf(n, path, "expected a list of mappings (axis: value), got %s", n.kind)
		return nil
	}
	var out []map[string]any
	for i, item := range n.vals {
		ip := indexPath(path, i)
		d.pos[ip] = item.pos
		if item.kind != kindMap {
			d.errorf(item, ip, "expected a mapping (axis: value), got %s", item.kind)
			continue
		}
		m := map[string]any{}
		for j, k := range item.keys {
			v := item.vals[j]
			if v.kind == kindMap || v.kind == kindSeq || v.kind == kindNull {
				d.errorf(v, keyPath(ip, k.text), "a matrix value is a string, number or boolean, got %s", v.kind)
				continue
			}
			d.pos[keyPath(ip, k.text)] = k.pos
			m[k.text] = v.generic()
		}
		out = append(out, m)
	}
	return out
}

// MarshalJSON writes the matrix in its YAML shape, axes in order.
func (x Matrix) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	write := func(k string, v any) error {
		if !first {
			b.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(v)
		if err != nil {
			return err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
		return nil
	}
	for _, a := range x.Axes {
		if err := write(a.Name, a.Values); err != nil {
			return nil, err
		}
	}
	if len(x.Include) > 0 {
		if err := write("include", x.Include); err != nil {
			return nil, err
		}
	}
	if len(x.Exclude) > 0 {
		if err := write("exclude", x.Exclude); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// AxisNames lists the matrix axes in order, plus keys introduced only by include.
func (x *Matrix) AxisNames() []string {
	var names []string
	seen := map[string]bool{}
	for _, a := range x.Axes {
		names = append(names, a.Name)
		seen[a.Name] = true
	}
	var extra []string
	for _, inc := range x.Include {
		for k := range inc {
			if !seen[k] {
				seen[k] = true
				extra = append(extra, k)
			}
		}
	}
	sort.Strings(extra)
	return append(names, extra...)
}

func (x *Filter) decodeNode(d *decoder, n *node, path string) {
	switch n.kind {
	case kindString, kindSeq:
		var sl StringList
		sl.decodeNode(d, n, path)
		x.Include = sl
	case kindMap:
		type plain Filter
		var p plain
		d.decodeStruct(n, reflect.ValueOf(&p).Elem(), path)
		*x = Filter(p)
	default:
		d.errorf(n, path, "expected a list of patterns or a mapping with include and exclude, got %s", n.kind)
	}
}

// recordStrings remembers the positions of strings nested in free-form values
// (step args), so expression errors inside them point at the right line.
func (d *decoder) recordStrings(n *node, path string) {
	d.pos[path] = n.pos
	switch n.kind {
	case kindString:
		d.strs[path] = n
	case kindMap:
		for i, k := range n.keys {
			d.recordStrings(n.vals[i], keyPath(path, k.text))
		}
	case kindSeq:
		for i, v := range n.vals {
			d.recordStrings(v, indexPath(path, i))
		}
	}
}

package expr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	exprlang "github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm/runtime"
)

// Internal names. The rewriter produces the first three from the call forms
// contains(…), startsWith(…) and endsWith(…); the patcher produces the status
// ones from success() etc. Users cannot write names starting with "__".
const (
	fnContains   = "__contains"
	fnStartsWith = "__startsWith"
	fnEndsWith   = "__endsWith"

	fnSuccess   = "__success"
	fnFailure   = "__failure"
	fnAlways    = "__always"
	fnCancelled = "__cancelled"

	fnHashFiles = "__hashFiles"
)

// statusFunctions maps the user-facing status functions to the internal
// functions they are patched into.
var statusFunctions = map[string]string{
	"success":   fnSuccess,
	"failure":   fnFailure,
	"always":    fnAlways,
	"cancelled": fnCancelled,
}

// userFunctions are the functions this package adds (in the order listed in
// messages). expr-lang's builtins stay available too.
var userFunctions = []string{
	"success", "failure", "always", "cancelled",
	"contains", "startsWith", "endsWith", "format", "join", "toJSON", "fromJSON", "hashFiles",
}

// internalNames translates internal names back in messages from expr-lang.
var internalNames = strings.NewReplacer(
	fnContains, "contains", fnStartsWith, "startsWith", fnEndsWith, "endsWith",
	fnSuccess, "success", fnFailure, "failure", fnAlways, "always", fnCancelled, "cancelled",
	fnHashFiles, "hashFiles",
)

// functionOptions registers the functions with expr-lang, with signatures so
// that argument counts and types are checked when compiling.
//
// The status functions receive the evaluation environment as an argument:
// expr-lang functions are closures fixed at compile time and cannot see the
// environment of a run, so the patcher rewrites success() into
// __success($env), and $env is the *Env given to Eval. This keeps the Env
// struct (and its static type checks) as the compile-time environment and costs
// nothing per evaluation.
func functionOptions() []exprlang.Option {
	envStatus := func(params []any) Status {
		if e, ok := params[0].(*Env); ok && e != nil {
			return e.Status
		}
		return Status{}
	}
	statusType := new(func(*Env) bool)
	return []exprlang.Option{
		exprlang.Function(fnSuccess, func(params ...any) (any, error) {
			s := envStatus(params)
			return !s.Failed && !s.Cancelled && !s.Incomplete, nil
		}, statusType),
		exprlang.Function(fnFailure, func(params ...any) (any, error) {
			return envStatus(params).Failed, nil
		}, statusType),
		exprlang.Function(fnCancelled, func(params ...any) (any, error) {
			return envStatus(params).Cancelled, nil
		}, statusType),
		exprlang.Function(fnAlways, func(params ...any) (any, error) {
			return true, nil
		}, statusType),
		exprlang.Function(fnHashFiles, func(params ...any) (any, error) {
			e, _ := params[0].(*Env)
			patterns := make([]string, 0, len(params)-1)
			for _, p := range params[1:] {
				s, ok := p.(string)
				if !ok {
					return nil, fmt.Errorf("hashFiles: patterns must be strings, got %T", p)
				}
				patterns = append(patterns, s)
			}
			if len(patterns) == 0 {
				return nil, errors.New("hashFiles: give at least one pattern, e.g. hashFiles('go.sum')")
			}
			if e == nil || e.Files == nil {
				return nil, errors.New("hashFiles: only available in a step's fields (env, args, run, with), where the job's workspace exists")
			}
			return e.Files.HashFiles(patterns)
		}, new(func(*Env, ...any) string)),
		exprlang.Function(fnContains, funcContains, new(func(any, any) bool)),
		exprlang.Function(fnStartsWith, func(params ...any) (any, error) {
			s, err := stringArgs("startsWith", params)
			if err != nil {
				return nil, err
			}
			return strings.HasPrefix(s[0], s[1]), nil
		}, new(func(any, any) bool)),
		exprlang.Function(fnEndsWith, func(params ...any) (any, error) {
			s, err := stringArgs("endsWith", params)
			if err != nil {
				return nil, err
			}
			return strings.HasSuffix(s[0], s[1]), nil
		}, new(func(any, any) bool)),
		exprlang.Function("format", funcFormat, new(func(string, ...any) string)),
		exprlang.Function("join", funcJoin, new(func(any) string), new(func(any, string) string)),
		exprlang.Function("toJSON", func(params ...any) (any, error) {
			b, err := marshalJSON(params[0])
			if err != nil {
				return nil, fmt.Errorf("toJSON: %v", err)
			}
			return string(b), nil
		}, new(func(any) string)),
		exprlang.Function("fromJSON", func(params ...any) (any, error) {
			s, _ := params[0].(string)
			var v any
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				return nil, fmt.Errorf("fromJSON: %q is not valid JSON: %v", truncate(s, 40), err)
			}
			return v, nil
		}, new(func(string) any)),
	}
}

// funcContains is contains(haystack, needle): substring test for strings,
// membership for arrays, key presence for maps. Case-sensitive.
func funcContains(params ...any) (any, error) {
	hay, needle := params[0], params[1]
	if hay == nil {
		return false, nil
	}
	if s, ok := hay.(string); ok {
		n, err := toString(needle)
		if err != nil {
			return nil, fmt.Errorf("contains: %v", err)
		}
		return strings.Contains(s, n), nil
	}
	v := reflect.ValueOf(hay)
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		if b, ok := hay.([]byte); ok {
			n, err := toString(needle)
			if err != nil {
				return nil, fmt.Errorf("contains: %v", err)
			}
			return bytes.Contains(b, []byte(n)), nil
		}
		for i := 0; i < v.Len(); i++ {
			if runtime.Equal(v.Index(i).Interface(), needle) {
				return true, nil
			}
		}
		return false, nil
	case reflect.Map:
		if n, ok := needle.(string); ok && v.Type().Key().Kind() == reflect.String {
			return v.MapIndex(reflect.ValueOf(n).Convert(v.Type().Key())).IsValid(), nil
		}
		for _, k := range v.MapKeys() {
			if runtime.Equal(k.Interface(), needle) {
				return true, nil
			}
		}
		return false, nil
	}
	s, err := toString(hay)
	if err != nil {
		return nil, fmt.Errorf("contains: %v", err)
	}
	n, err := toString(needle)
	if err != nil {
		return nil, fmt.Errorf("contains: %v", err)
	}
	return strings.Contains(s, n), nil
}

func stringArgs(fn string, params []any) ([2]string, error) {
	var out [2]string
	for i := range out {
		s, err := toString(params[i])
		if err != nil {
			return out, fmt.Errorf("%s: %v", fn, err)
		}
		out[i] = s
	}
	return out, nil
}

// funcFormat is format("{0}-{1}", a, b). "{{" and "}}" are literal braces.
func funcFormat(params ...any) (any, error) {
	f, _ := params[0].(string)
	args := params[1:]
	var b strings.Builder
	err := scanFormat(f, len(args), func(lit string, arg int) error {
		if arg < 0 {
			b.WriteString(lit)
			return nil
		}
		s, err := toString(args[arg])
		if err != nil {
			return err
		}
		b.WriteString(s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("format: %v", err)
	}
	return b.String(), nil
}

// scanFormat walks a format string, calling emit with literal text (arg -1)
// or a placeholder index. It is shared by evaluation and the static check of
// constant format strings, so both accept exactly the same strings.
func scanFormat(f string, nargs int, emit func(lit string, arg int) error) error {
	start := 0
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '{':
			if i+1 < len(f) && f[i+1] == '{' {
				if err := emit(f[start:i+1], -1); err != nil {
					return err
				}
				i++
				start = i + 1
				continue
			}
			j := strings.IndexByte(f[i:], '}')
			if j < 0 {
				return fmt.Errorf(`"{" at %d is not closed; write "{{" for a literal brace`, i)
			}
			idx := f[i+1 : i+j]
			n, err := strconv.Atoi(idx)
			if err != nil || n < 0 || strings.TrimSpace(idx) != idx || strings.HasPrefix(idx, "+") {
				return fmt.Errorf("invalid placeholder {%s}; placeholders are {0}, {1}, …; write \"{{\" for a literal brace", idx)
			}
			if n >= nargs {
				return fmt.Errorf("placeholder {%d} is out of range: %d argument(s) after the format string", n, nargs)
			}
			if err := emit(f[start:i], -1); err != nil {
				return err
			}
			if err := emit("", n); err != nil {
				return err
			}
			i += j
			start = i + 1
		case '}':
			if i+1 < len(f) && f[i+1] == '}' {
				if err := emit(f[start:i+1], -1); err != nil {
					return err
				}
				i++
				start = i + 1
				continue
			}
			return fmt.Errorf(`"}" at %d has no matching "{"; write "}}" for a literal brace`, i)
		}
	}
	return emit(f[start:], -1)
}

// funcJoin is join(array, sep): elements in their string form, sep default ",".
// A string is returned as is, nil gives "".
func funcJoin(params ...any) (any, error) {
	sep := ","
	if len(params) > 1 {
		sep, _ = params[1].(string)
	}
	v := reflect.ValueOf(params[0])
	switch v.Kind() {
	case reflect.Invalid:
		return "", nil
	case reflect.Slice, reflect.Array:
		if b, ok := params[0].([]byte); ok {
			return string(b), nil
		}
		parts := make([]string, v.Len())
		for i := range parts {
			s, err := toString(v.Index(i).Interface())
			if err != nil {
				return nil, fmt.Errorf("join: %v", err)
			}
			parts[i] = s
		}
		return strings.Join(parts, sep), nil
	}
	s, err := toString(params[0])
	if err != nil {
		return nil, fmt.Errorf("join: %v", err)
	}
	return s, nil
}

// toString is the string form of a value, used wherever a value ends up in
// text: strings as is, true/false, integers without a decimal point (a float
// that is integral prints as an integer, since JSON numbers arrive as
// float64), nil as "", lists, maps and structs as compact JSON.
func toString(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool:
		if v {
			return "true", nil
		}
		return "false", nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return formatFloat(v), nil
	case float32:
		return formatFloat(float64(v)), nil
	case []byte:
		return string(v), nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	case time.Duration:
		return v.String(), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(rv.Uint(), 10), nil
	case reflect.String:
		return rv.String(), nil
	case reflect.Bool:
		return strconv.FormatBool(rv.Bool()), nil
	case reflect.Float32, reflect.Float64:
		return formatFloat(rv.Float()), nil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return "", nil
		}
	case reflect.Func, reflect.Chan, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return fmt.Sprint(v), nil
	}
	b, err := marshalJSON(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// marshalJSON is compact JSON without HTML escaping: the result goes into
// shell commands and files, not HTML.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		var ue *json.UnsupportedValueError
		if errors.As(err, &ue) {
			return nil, fmt.Errorf("cannot convert %s to JSON", ue.Str)
		}
		return nil, fmt.Errorf("cannot convert %s to JSON: %v", typeName(v), err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func typeName(v any) string {
	if v == nil {
		return "nil"
	}
	return reflect.TypeOf(v).String()
}

// truthy is the truth value of a condition result: false, nil, "", 0 and NaN
// are false; everything else (including empty lists and maps) is true.
func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case string:
		return v != ""
	case int:
		return v != 0
	case float64:
		return v != 0 && !math.IsNaN(v)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int() != 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return rv.Uint() != 0
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		return f != 0 && !math.IsNaN(f)
	case reflect.String:
		return rv.Len() != 0
	case reflect.Bool:
		return rv.Bool()
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
		return !rv.IsNil()
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

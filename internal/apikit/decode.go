package apikit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/textdist"
)

// Request decoding is strict so that a typo never silently does nothing: an
// unknown field, a field given twice, a wrong type or trailing data is a 400
// that names the field. encoding/json's own errors do not (DisallowUnknownFields
// names only the first unknown field, without a hint, and duplicates pass), so
// the top level is walked here token by token and each field is decoded on its
// own.

// BodyFields maps a body struct's JSON names to field indexes (embedded
// structs' fields included, so bodies can share field sets).
type BodyFields struct {
	Names []string
	Index map[string][]int
}

var fieldCache sync.Map // reflect.Type → *BodyFields

// FieldsOf returns the JSON fields of struct type t (cached).
func FieldsOf(t reflect.Type) *BodyFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*BodyFields)
	}
	bf := &BodyFields{Index: map[string][]int{}}
	for _, f := range reflect.VisibleFields(t) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous || !f.IsExported() || name == "" || name == "-" {
			continue
		}
		bf.Names = append(bf.Names, name)
		bf.Index[name] = f.Index
	}
	fieldCache.Store(t, bf)
	return bf
}

// DecodeOptions tune Decode for one endpoint.
type DecodeOptions struct {
	// optional accepts an empty body as {}.
	Optional bool
	// rejected explains fields that are not accepted here but that a client
	// may reasonably send (the legacy `content` of a spec save, `spec` on a
	// pipeline update): a plain "unknown field" would not say what to do.
	Rejected map[string]string
}

// Decode reads a JSON object from data into dst (a pointer to a struct
// whose json tags name the accepted fields) and returns the names of the
// fields present. Every error is a 4xx *Error.
func Decode(data []byte, dst any, opts DecodeOptions) (map[string]bool, error) {
	present := map[string]bool{}
	if len(bytes.TrimSpace(data)) == 0 {
		if opts.Optional {
			return present, nil
		}
		return nil, Errorf(http.StatusBadRequest, "body: empty; send a JSON object")
	}
	v := reflect.ValueOf(dst).Elem()
	fields := FieldsOf(v.Type())

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, SyntaxError(data, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, Errorf(http.StatusBadRequest, "body: must be a JSON object, got %s", jsonKind(tok))
	}
	var unknown []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, SyntaxError(data, err)
		}
		key := tok.(string) // inside an object the decoder only yields string keys
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, SyntaxError(data, err)
		}
		if present[key] {
			return nil, Errorf(http.StatusBadRequest, "body: field %q given twice", key)
		}
		i, known := fields.Index[key]
		if !known {
			if why, ok := opts.Rejected[key]; ok {
				return nil, Errorf(http.StatusBadRequest, "body.%s: %s", key, why)
			}
			unknown = append(unknown, key)
			continue
		}
		present[key] = true
		f := v.FieldByIndex(i)
		if err := CheckRaw(raw, f.Type(), "body."+key); err != nil {
			return nil, err
		}
		if err := decodeField(raw, f, "body."+key); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, SyntaxError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, SyntaxError(data, err)
		}
		return nil, Errorf(http.StatusBadRequest, "body: unexpected data after the JSON object at offset %d; send exactly one object", dec.InputOffset())
	}
	if len(unknown) > 0 {
		return nil, UnknownNames("body: unknown field", unknown, fields.Names)
	}
	return present, nil
}

// Limits of the JSON a request may send.
const (
	// MaxDepth bounds how deeply a field's arrays and objects nest: deeper
	// values are no configuration anyone writes, and they break readers
	// (Python's json and jq stop at a few hundred levels).
	MaxDepth = 32
	// MaxFreeFormBytes bounds a free-form field (an object of any values,
	// e.g. metadata, or of strings, e.g. variables) as sent.
	MaxFreeFormBytes = 64 << 10
)

// CheckRaw refuses a field's JSON text that nests deeper than MaxDepth,
// that is not valid UTF-8 or has a lone surrogate escape (encoding/json
// would store U+FFFD in its place: what is stored would differ from what
// was sent), or, for a free-form field (a map or an interface), that is
// larger than MaxFreeFormBytes. where names the field.
func CheckRaw(raw []byte, t reflect.Type, where string) error {
	if d := check.JSONDepth(raw); d > MaxDepth {
		return Errorf(http.StatusBadRequest, "%s: nested %d levels deep, at most %d", where, d, MaxDepth)
	}
	if !check.ValidJSONText(raw) {
		return Errorf(http.StatusBadRequest, "%s: must be valid UTF-8 text: invalid bytes and lone surrogate escapes (\\ud800) are refused", where)
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Kind() == reflect.Map || t.Kind() == reflect.Interface) && len(raw) > MaxFreeFormBytes {
		return Errorf(http.StatusBadRequest, "%s: %s, at most %s", where, check.Bytes(int64(len(raw))), check.Bytes(MaxFreeFormBytes))
	}
	return nil
}

// decodeField decodes one top-level field, naming it in errors.
func decodeField(raw json.RawMessage, f reflect.Value, where string) error {
	err := json.Unmarshal(raw, f.Addr().Interface())
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		ft := f.Type()
		if ft.Kind() == reflect.Pointer { // *map: a field where null means something
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Map && ft.Key().Kind() == reflect.String {
			if kerr := mapValueError(raw, ft.Elem(), where); kerr != nil {
				return kerr
			}
		}
		if te.Field != "" {
			where += "." + te.Field
		}
		return Errorf(http.StatusBadRequest, "%s: must be %s, got %s", where, DescribeType(te.Type), te.Value)
	}
	// Syntax was checked by the token walk; what remains are values a Go type
	// cannot hold (e.g. a number out of int range), which are still the
	// client's to fix.
	return Errorf(http.StatusBadRequest, "%s: %v", where, strings.TrimPrefix(err.Error(), "json: "))
}

// mapValueError names the key of an object whose value has the wrong type:
// encoding/json does not say which key it was.
func mapValueError(raw json.RawMessage, elem reflect.Type, where string) error {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil // not an object at all: the caller's message says so
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := reflect.New(elem)
		err := json.Unmarshal(m[k], v.Interface())
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Errorf(http.StatusBadRequest, "%s.%s: must be %s, got %s", where, k, DescribeType(elem), te.Value)
		}
	}
	return nil
}

// DescribeType says in words what JSON a Go type accepts.
func DescribeType(t reflect.Type) string {
	if t == nil {
		return "a valid value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Map:
		if t.Elem().Kind() == reflect.String {
			return "an object of string values"
		}
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return DescribeType(t.Elem())
	}
	return "a valid value"
}

// jsonKind names the JSON value a token starts.
func jsonKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "something else"
}

// SyntaxError reports malformed JSON with its line and column. The
// streaming decoder's offsets are not always absolute, so the position comes
// from json.Unmarshal of the whole body, which reports the same first error
// with an absolute offset.
func SyntaxError(data []byte, err error) error {
	var whole any
	if uerr := json.Unmarshal(data, &whole); uerr != nil {
		err = uerr
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, se.Offset)
		return Errorf(http.StatusBadRequest, "body: malformed JSON at line %d, column %d: %s", line, col, strings.TrimPrefix(se.Error(), "json: "))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return Errorf(http.StatusBadRequest, "body: malformed JSON: it ends before the object is complete")
	}
	return Errorf(http.StatusBadRequest, "body: malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// lineCol converts a byte offset into a 1-based line and column. The decoder
// reports the offset after the offending byte, hence the step back.
func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off > 0 {
		off--
	}
	before := data[:off]
	line := 1 + bytes.Count(before, []byte("\n"))
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// UnknownNames builds the error for unknown body fields or query parameters:
// each with a "did you mean" when one accepted name is close, else the list of
// accepted names.
func UnknownNames(prefix string, unknown, accepted []string) error {
	var parts []string
	hinted := true
	for _, u := range unknown {
		if m := Closest(u, accepted); m != "" {
			parts = append(parts, fmt.Sprintf("%q (did you mean %q?)", u, m))
		} else {
			parts = append(parts, strconv.Quote(u))
			hinted = false
		}
	}
	msg := prefix + " " + strings.Join(parts, ", ")
	if len(unknown) > 1 {
		msg = strings.Replace(msg, prefix, prefix+"s", 1)
	}
	if !hinted {
		if len(accepted) == 0 {
			msg += "; none are accepted here"
		} else {
			msg += "; accepted: " + strings.Join(accepted, ", ")
		}
	}
	return Errorf(http.StatusBadRequest, "%s", msg)
}

// Closest returns the accepted name a typo most likely meant, or "".
func Closest(s string, accepted []string) string {
	best, bestD := "", 3
	for _, a := range accepted {
		if strings.EqualFold(s, a) {
			return a
		}
		if d := textdist.Levenshtein(strings.ToLower(s), strings.ToLower(a)); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

// ReadBody reads the request body (already limited by MaxBytesReader) and
// checks its content type. A missing Content-Type, and curl's default for -d
// (application/x-www-form-urlencoded), are accepted: curl users and simple
// clients often leave it out, and the body must be JSON anyway.
func ReadBody(r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		// curl -d sends its default form type: the body must still be JSON,
		// and a token in a header (never a cookie) authenticates, so a
		// cross-site form cannot call the API through this.
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "application/x-www-form-urlencoded") {
			return nil, Errorf(http.StatusUnsupportedMediaType, "header Content-Type: must be application/json, got %q", ct)
		}
	}
	if r.ContentLength > limit {
		return nil, TooLarge(limit)
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, TooLarge(limit)
		}
		return nil, Errorf(http.StatusBadRequest, "body: cannot read it: %v", err)
	}
	return data, nil
}

// TooLarge is the 413 of a body past limit.
func TooLarge(limit int64) error {
	return Errorf(http.StatusRequestEntityTooLarge, "body: larger than the limit of %s", check.Bytes(limit))
}

// Query is a request's parsed query string, checked against the parameters a
// route accepts.
type Query struct{ v url.Values }

// ParseQuery parses raw (the URL's RawQuery) strictly: malformed escapes,
// unknown parameters and repeated parameters are 400s, because a misspelt
// filter that is silently ignored returns wrong data that looks right.
func ParseQuery(raw string, accepted ...string) (Query, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return Query{}, Errorf(http.StatusBadRequest, "query: malformed: %v", err)
	}
	var unknown []string
	for name, vals := range v {
		if !slices.Contains(accepted, name) {
			unknown = append(unknown, name)
			continue
		}
		if len(vals) > 1 {
			return Query{}, Errorf(http.StatusBadRequest, "query parameter %s: given %d times; give it once", name, len(vals))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return Query{}, UnknownNames("query: unknown parameter", unknown, accepted)
	}
	return Query{v: v}, nil
}

// Has reports whether the parameter is present.
func (q Query) Has(name string) bool { return q.v.Has(name) }

// Str returns the parameter, "" when absent.
func (q Query) Str(name string) string { return q.v.Get(name) }

// Int returns the integer parameter name, def when absent, or an error
// that says the accepted range.
func (q Query) Int(name string, def, lo, hi int64) (int64, error) {
	if !q.v.Has(name) {
		return def, nil
	}
	s := q.v.Get(name)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, Errorf(http.StatusBadRequest, "query parameter %s: must be an integer between %d and %d, got %q", name, lo, hi, s)
	}
	return n, nil
}

// Pagination bounds. MaxPage keeps (page-1)*pageSize far from overflowing.
const (
	defaultPageSize = 20
	MaxPageSize     = 100
	MaxPage         = 1_000_000
)

// MaxUnix is 9999-12-31T23:59:59Z, the latest time in Unix seconds a query
// accepts: later times are typos.
const MaxUnix = 253402300799

// Page is a parsed page/pageSize pair.
type Page struct{ Number, Size int }

func (p Page) Offset() int { return (p.Number - 1) * p.Size }

// Pagination parses page (from 1) and pageSize (1 to 100).
func (q Query) Pagination() (Page, error) {
	pg, err := q.Int("page", 1, 1, MaxPage)
	if err != nil {
		return Page{}, err
	}
	size, err := q.Int("pageSize", defaultPageSize, 1, MaxPageSize)
	if err != nil {
		return Page{}, err
	}
	return Page{Number: int(pg), Size: int(size)}, nil
}

// Ids are a short lowercase prefix naming the kind, "_", and lowercase base32
// randomness (runnel.NewID). Path ids are checked against this shape before
// the store is asked, so nothing shaped like a path ("..", "/", NUL) ever
// reaches a query or a log file name.
var idPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z]{2,5}_[a-z0-9]{10,40}$`) })

// IsID reports whether id is an id with prefix (written with its
// underscore: "run_").
func IsID(id, prefix string) bool {
	return idPattern().MatchString(id) && strings.HasPrefix(id, prefix)
}

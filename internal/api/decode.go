package api

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

// bodyFields maps a body struct's JSON names to field indexes (embedded
// structs' fields included, so bodies can share field sets).
type bodyFields struct {
	names []string
	index map[string][]int
}

var fieldCache sync.Map // reflect.Type → *bodyFields

func fieldsOf(t reflect.Type) *bodyFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*bodyFields)
	}
	bf := &bodyFields{index: map[string][]int{}}
	for _, f := range reflect.VisibleFields(t) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous || !f.IsExported() || name == "" || name == "-" {
			continue
		}
		bf.names = append(bf.names, name)
		bf.index[name] = f.Index
	}
	fieldCache.Store(t, bf)
	return bf
}

// decodeOptions tune decodeJSON for one endpoint.
type decodeOptions struct {
	// optional accepts an empty body as {}.
	optional bool
	// rejected explains fields that are not accepted here but that a client
	// may reasonably send (the legacy `content` of a spec save, `spec` on a
	// pipeline update): a plain "unknown field" would not say what to do.
	rejected map[string]string
}

// decodeJSON reads a JSON object from data into dst (a pointer to a struct
// whose json tags name the accepted fields) and returns the names of the
// fields present. Every error is a 4xx *apiError.
func decodeJSON(data []byte, dst any, opts decodeOptions) (map[string]bool, error) {
	present := map[string]bool{}
	if len(bytes.TrimSpace(data)) == 0 {
		if opts.optional {
			return present, nil
		}
		return nil, errorf(http.StatusBadRequest, "body: empty; send a JSON object")
	}
	v := reflect.ValueOf(dst).Elem()
	fields := fieldsOf(v.Type())

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(data, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errorf(http.StatusBadRequest, "body: must be a JSON object, got %s", jsonKind(tok))
	}
	var unknown []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(data, err)
		}
		key := tok.(string) // inside an object the decoder only yields string keys
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntaxError(data, err)
		}
		if present[key] {
			return nil, errorf(http.StatusBadRequest, "body: field %q given twice", key)
		}
		i, known := fields.index[key]
		if !known {
			if why, ok := opts.rejected[key]; ok {
				return nil, errorf(http.StatusBadRequest, "body.%s: %s", key, why)
			}
			unknown = append(unknown, key)
			continue
		}
		present[key] = true
		if err := decodeField(raw, v.FieldByIndex(i), "body."+key); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, syntaxError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, syntaxError(data, err)
		}
		return nil, errorf(http.StatusBadRequest, "body: unexpected data after the JSON object at offset %d; send exactly one object", dec.InputOffset())
	}
	if len(unknown) > 0 {
		return nil, unknownNames("body: unknown field", unknown, fields.names)
	}
	return present, nil
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
		return errorf(http.StatusBadRequest, "%s: must be %s, got %s", where, describeType(te.Type), te.Value)
	}
	// Syntax was checked by the token walk; what remains are values a Go type
	// cannot hold (e.g. a number out of int range), which are still the
	// client's to fix.
	return errorf(http.StatusBadRequest, "%s: %v", where, strings.TrimPrefix(err.Error(), "json: "))
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
			return errorf(http.StatusBadRequest, "%s.%s: must be %s, got %s", where, k, describeType(elem), te.Value)
		}
	}
	return nil
}

// describeType says in words what JSON a Go type accepts.
func describeType(t reflect.Type) string {
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
		return describeType(t.Elem())
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

// syntaxError reports malformed JSON with its line and column. The
// streaming decoder's offsets are not always absolute, so the position comes
// from json.Unmarshal of the whole body, which reports the same first error
// with an absolute offset.
func syntaxError(data []byte, err error) error {
	var whole any
	if uerr := json.Unmarshal(data, &whole); uerr != nil {
		err = uerr
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, se.Offset)
		return errorf(http.StatusBadRequest, "body: malformed JSON at line %d, column %d: %s", line, col, strings.TrimPrefix(se.Error(), "json: "))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, "body: malformed JSON: it ends before the object is complete")
	}
	return errorf(http.StatusBadRequest, "body: malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
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

// unknownNames builds the error for unknown body fields or query parameters:
// each with a "did you mean" when one accepted name is close, else the list of
// accepted names.
func unknownNames(prefix string, unknown, accepted []string) error {
	var parts []string
	hinted := true
	for _, u := range unknown {
		if m := closest(u, accepted); m != "" {
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
	return errorf(http.StatusBadRequest, "%s", msg)
}

// closest returns the accepted name a typo most likely meant, or "".
func closest(s string, accepted []string) string {
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

// readBody reads the request body (already limited by MaxBytesReader) and
// checks its content type. A missing Content-Type is accepted: curl users and
// simple clients often leave it out, and the body must be JSON anyway.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, errorf(http.StatusUnsupportedMediaType, "header Content-Type: must be application/json, got %q", ct)
		}
	}
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		return nil, errorf(http.StatusBadRequest, "body: cannot read it: %v", err)
	}
	return data, nil
}

func tooLarge(limit int64) error {
	return errorf(http.StatusRequestEntityTooLarge, "body: larger than the limit of %s", check.Bytes(limit))
}

// query is a request's parsed query string, checked against the parameters a
// route accepts.
type query struct{ v url.Values }

// parseQuery parses raw (the URL's RawQuery) strictly: malformed escapes,
// unknown parameters and repeated parameters are 400s, because a misspelt
// filter that is silently ignored returns wrong data that looks right.
func parseQuery(raw string, accepted ...string) (query, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return query{}, errorf(http.StatusBadRequest, "query: malformed: %v", err)
	}
	var unknown []string
	for name, vals := range v {
		if !slices.Contains(accepted, name) {
			unknown = append(unknown, name)
			continue
		}
		if len(vals) > 1 {
			return query{}, errorf(http.StatusBadRequest, "query parameter %s: given %d times; give it once", name, len(vals))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return query{}, unknownNames("query: unknown parameter", unknown, accepted)
	}
	return query{v: v}, nil
}

func (q query) has(name string) bool { return q.v.Has(name) }

func (q query) str(name string) string { return q.v.Get(name) }

// intParam returns the integer parameter name, def when absent, or an error
// that says the accepted range.
func (q query) intParam(name string, def, lo, hi int64) (int64, error) {
	if !q.v.Has(name) {
		return def, nil
	}
	s := q.v.Get(name)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, errorf(http.StatusBadRequest, "query parameter %s: must be an integer between %d and %d, got %q", name, lo, hi, s)
	}
	return n, nil
}

// Pagination bounds. maxPage keeps (page-1)*pageSize far from overflowing.
const (
	defaultPageSize = 20
	maxPageSize     = 100
	maxPage         = 1_000_000
)

// page is a parsed page/pageSize pair.
type page struct{ page, size int }

func (p page) offset() int { return (p.page - 1) * p.size }

// pagination parses page (from 1) and pageSize (1 to 100).
func (q query) pagination() (page, error) {
	pg, err := q.intParam("page", 1, 1, maxPage)
	if err != nil {
		return page{}, err
	}
	size, err := q.intParam("pageSize", defaultPageSize, 1, maxPageSize)
	if err != nil {
		return page{}, err
	}
	return page{page: int(pg), size: int(size)}, nil
}

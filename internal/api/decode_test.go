package api

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func reflectType(v any) reflect.Type { return reflect.TypeOf(v).Elem() }

func nowForTest() time.Time { return time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC) }

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		body string
		opts decodeOptions
		msg  string // "" = success
	}{
		{`{"name":"a"}`, decodeOptions{}, ""},
		{`  {}  `, decodeOptions{}, ""},
		{``, decodeOptions{optional: true}, ""},
		{` `, decodeOptions{}, "body: empty"},
		{`{"nmae":"a"}`, decodeOptions{}, `body: unknown field "nmae" (did you mean "name"?)`},
		{`{"NAME":"a"}`, decodeOptions{}, `body: unknown field "NAME" (did you mean "name"?)`},
		{`{"zzzzzzzz":"a"}`, decodeOptions{}, `body: unknown field "zzzzzzzz"; accepted: projectId, name,`},
		{`{"content":"a"}`, decodeOptions{rejected: map[string]string{"content": "no text"}}, "body.content: no text"},
		{`{"name":1}`, decodeOptions{}, "body.name: must be a string, got number"},
		{`{"metadata":[1]}`, decodeOptions{}, "body.metadata: must be an object, got array"},
		{`{"name":"a","name":"b"}`, decodeOptions{}, `body: field "name" given twice`},
		{`{"name":"a"}x`, decodeOptions{}, "body: malformed JSON at line 1, column 13: invalid character 'x'"},
		{`{"name":"a"}{}`, decodeOptions{}, "body: unexpected data after the JSON object"},
		{"{\n\"name\": tru\n}", decodeOptions{}, "body: malformed JSON at line 2, column"},
		{`{"name"`, decodeOptions{}, "body: malformed JSON"},
		{`{"name":`, decodeOptions{}, "body: malformed JSON"},
		{`[]`, decodeOptions{}, "body: must be a JSON object, got an array"},
		{`null`, decodeOptions{}, "body: must be a JSON object, got null"},
		{`12`, decodeOptions{}, "body: must be a JSON object, got a number"},
		{`{"name":"\ud800"}`, decodeOptions{}, ""},
		{"{\"name\":\"a\xffb\"}", decodeOptions{}, ""},
	}
	for _, tt := range tests {
		var b pipelineBody
		_, err := decodeJSON([]byte(tt.body), &b, tt.opts)
		if tt.msg == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.body, err)
			}
			continue
		}
		var ae *apiError
		if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || !strings.Contains(ae.msg, tt.msg) {
			t.Errorf("%q: got %v, want 400 containing %q", tt.body, err, tt.msg)
		}
	}
}

func TestCheckPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"/": true, "/api/v1/pipelines": true, "/api/v1/pipelines/": true,
		"/api/../x": false, "/api/./x": false, "/api//x": false, "/a/..": false, "/a\x00b": false, "": false,
	} {
		if got := checkPath(p) == nil; got != ok {
			t.Errorf("checkPath(%q) ok=%v, want %v", p, got, ok)
		}
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newID("pl_")
		if !idPattern().MatchString(id) || len(id) != 23 || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

package apikit_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/pipeline"
)

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		body string
		opts apikit.DecodeOptions
		msg  string // "" = success
	}{
		{`{"name":"a"}`, apikit.DecodeOptions{}, ""},
		{`  {}  `, apikit.DecodeOptions{}, ""},
		{``, apikit.DecodeOptions{Optional: true}, ""},
		{` `, apikit.DecodeOptions{}, "body: empty"},
		{`{"nmae":"a"}`, apikit.DecodeOptions{}, `body: unknown field "nmae" (did you mean "name"?)`},
		{`{"NAME":"a"}`, apikit.DecodeOptions{}, `body: unknown field "NAME" (did you mean "name"?)`},
		{`{"zzzzzzzz":"a"}`, apikit.DecodeOptions{}, `body: unknown field "zzzzzzzz"; accepted: projectId, name,`},
		{`{"content":"a"}`, apikit.DecodeOptions{Rejected: map[string]string{"content": "no text"}}, "body.content: no text"},
		{`{"name":1}`, apikit.DecodeOptions{}, "body.name: must be a string, got number"},
		{`{"metadata":[1]}`, apikit.DecodeOptions{}, "body.metadata: must be an object, got array"},
		{`{"name":"a","name":"b"}`, apikit.DecodeOptions{}, `body: field "name" given twice`},
		{`{"name":"a"}x`, apikit.DecodeOptions{}, "body: malformed JSON at line 1, column 13: invalid character 'x'"},
		{`{"name":"a"}{}`, apikit.DecodeOptions{}, "body: unexpected data after the JSON object"},
		{"{\n\"name\": tru\n}", apikit.DecodeOptions{}, "body: malformed JSON at line 2, column"},
		{`{"name"`, apikit.DecodeOptions{}, "body: malformed JSON"},
		{`{"name":`, apikit.DecodeOptions{}, "body: malformed JSON"},
		{`[]`, apikit.DecodeOptions{}, "body: must be a JSON object, got an array"},
		{`null`, apikit.DecodeOptions{}, "body: must be a JSON object, got null"},
		{`12`, apikit.DecodeOptions{}, "body: must be a JSON object, got a number"},
		// Text that encoding/json would store as U+FFFD, and values nested
		// or sized past the limits, are refused naming the field.
		{`{"name":"\ud800"}`, apikit.DecodeOptions{}, "body.name: must be valid UTF-8 text"},
		{"{\"name\":\"a\xffb\"}", apikit.DecodeOptions{}, "body.name: must be valid UTF-8 text"},
		{`{"name":"\ud83d\ude00 ok"}`, apikit.DecodeOptions{}, ""},
		{`{"metadata":` + strings.Repeat(`{"a":`, 32) + `1` + strings.Repeat(`}`, 32) + `}`, apikit.DecodeOptions{}, ""},
		{`{"metadata":` + strings.Repeat(`{"a":`, 33) + `1` + strings.Repeat(`}`, 33) + `}`, apikit.DecodeOptions{}, "body.metadata: nested 33 levels deep, at most 32"},
		{`{"metadata":` + strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000) + `}`, apikit.DecodeOptions{}, "body.metadata: nested 10000 levels deep"},
		{`{"metadata":{"a":"` + strings.Repeat("x", 70000) + `"}}`, apikit.DecodeOptions{}, "body.metadata: 70008 bytes, at most 64 KiB"},
	}
	for _, tt := range tests {
		var b pipeline.Fields
		_, err := apikit.Decode([]byte(tt.body), &b, tt.opts)
		if tt.msg == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.body, err)
			}
			continue
		}
		var ae *apikit.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Msg, tt.msg) {
			t.Errorf("%q: got %v, want 400 containing %q", tt.body, err, tt.msg)
		}
	}
}

func TestCheckPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"/": true, "/api/v1/pipelines": true, "/api/v1/pipelines/": true,
		"/api/../x": false, "/api/./x": false, "/api//x": false, "/a/..": false, "/a\x00b": false, "": false,
	} {
		if got := apikit.CheckPath(p) == nil; got != ok {
			t.Errorf("apikit.CheckPath(%q) ok=%v, want %v", p, got, ok)
		}
	}
}

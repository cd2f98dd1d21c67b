package api

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel/internal/accountapi"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/imageapi"
	"github.com/runnel-ci/runnel/internal/repos"
)

// TestOpenAPIMatchesRoutes: every registered route is documented with its
// method, every documented operation is in the route table and is served by
// the live handler (not the router's 404/405), and the document is the one
// served at /api/v1/openapi.json.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t)
	doc := openAPI(t)
	paths := doc["paths"].(map[string]any)

	registered := map[string]bool{}
	for _, rt := range e.srv.routes() {
		key := rt.Method + " " + rt.Path
		registered[key] = true
		item, ok := paths[rt.Path].(map[string]any)
		if !ok {
			t.Errorf("route %s: path not in the OpenAPI document", key)
			continue
		}
		op, ok := item[strings.ToLower(rt.Method)].(map[string]any)
		if !ok {
			t.Errorf("route %s: method not in the OpenAPI document", key)
			continue
		}
		// Public routes say so; the others inherit the bearer requirement.
		sec, hasSec := op["security"].([]any)
		if rt.Public != (hasSec && len(sec) == 0) {
			t.Errorf("route %s: public=%v but the document's security is %v", key, rt.Public, op["security"])
		}
		// Every path parameter is declared.
		declared := map[string]bool{}
		for _, p := range append(asList(item["parameters"]), asList(op["parameters"])...) {
			pm := resolve(doc, p).(map[string]any)
			if pm["in"] == "path" {
				declared[pm["name"].(string)] = true
			}
		}
		for _, seg := range strings.Split(rt.Path, "/") {
			if strings.HasPrefix(seg, "{") && !declared[strings.Trim(seg, "{}")] {
				t.Errorf("route %s: path parameter %s not declared", key, seg)
			}
		}
	}

	var documented []string
	for p, item := range paths {
		for m := range item.(map[string]any) {
			if m == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(m)+" "+p)
		}
	}
	sort.Strings(documented)
	for _, key := range documented {
		if !registered[key] {
			t.Errorf("documented %s is not a route", key)
			continue
		}
		method, path, _ := strings.Cut(key, " ")
		var body any
		if method == "POST" || method == "PUT" {
			body = map[string]any{}
		}
		r := e.do(method, samplePath(path), body)
		if r.status == http.StatusMethodNotAllowed || strings.HasPrefix(r.errMsg(), "no route") {
			t.Errorf("documented %s is not served: %d %s", key, r.status, r.body)
		}
	}

	served := e.do("GET", "/api/v1/openapi.json", nil).must(t, 200)
	if !bytes.Equal(served.body, openAPIDoc) {
		t.Error("the served document differs from the embedded one")
	}
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi version %v", doc["openapi"])
	}
	// Every $ref resolves.
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				var cur any = doc
				for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, ok := cur.(map[string]any)
					if !ok || m[part] == nil {
						t.Errorf("dangling $ref %s", ref)
						return
					}
					cur = m[part]
				}
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(doc)
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// TestOpenAPIBodiesMatchDecoders: the documented request bodies accept
// exactly the fields the decoders accept.
func TestOpenAPIBodiesMatchDecoders(t *testing.T) {
	doc := openAPI(t)
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	cases := map[string]any{
		"PipelineCreate":          &createPipelineBody{},
		"PipelineUpdate":          &pipelineBody{},
		"SpecValidateRequest":     &specBody{},
		"SpecSaveRequest":         &saveBody{},
		"TriggerRequest":          &triggerBody{},
		"ControlRequest":          &controlBody{},
		"AgentUpdate":             &agentBody{},
		"RegistrationTokenCreate": &registrationTokenBody{},
		"SecretCreate":            &secretBody{},
		"SecretUpdate":            &secretUpdateBody{},
		"CredentialCreate":        &credentialBody{},
		"CredentialUpdate":        &credentialUpdateBody{},
		"RepositoryActivate":      &activateBody{},
		"EmptyRequest":            &struct{}{},
		"PipelineActivate":        &repos.StatusOptions{},
	}
	maps.Copy(cases, imageapi.RequestBodies())
	maps.Copy(cases, accountapi.RequestBodies())
	for name, v := range cases {
		props := schemas[name].(map[string]any)["properties"].(map[string]any)
		var documented []string
		for k := range props {
			documented = append(documented, k)
		}
		sort.Strings(documented)
		accepted := append([]string(nil), apikit.FieldsOf(reflectType(v)).Names...)
		sort.Strings(accepted)
		if strings.Join(documented, ",") != strings.Join(accepted, ",") {
			t.Errorf("%s: documented %v, decoder accepts %v", name, documented, accepted)
		}
	}
}

// TestRecoverPanics: a panicking handler costs one request an envelope 500,
// and the server keeps serving.
func TestRecoverPanics(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil)), now: nowForTest}
	mux := &apikit.Mux{Log: s.log, Fail: s.fail, Routes: []apikit.Route{
		{Method: "GET", Path: "/boom", Public: true, H: func(http.ResponseWriter, *http.Request) error { panic("kaboom") }},
		{Method: "GET", Path: "/fine", Public: true, H: func(w http.ResponseWriter, _ *http.Request) error { s.ok(w, 200, nil); return nil }},
	}}
	h := mux.Handler()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
	var env map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || rec.Code != 500 || env["code"] != 500.0 ||
		!strings.Contains(env["errMsg"].(string), "internal error") || strings.Contains(rec.Body.String(), "kaboom") {
		t.Errorf("panic answer: %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), "kaboom") || !strings.Contains(logs.String(), "stack=") {
		t.Errorf("panic not logged with its stack:\n%s", logs.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/fine", nil))
	if rec.Code != 200 {
		t.Errorf("after a panic: %d", rec.Code)
	}
}

func TestGroupRoutes(t *testing.T) {
	s := &Server{}
	groups := apikit.GroupRoutes(s.routes())
	var merged []string
	for _, g := range groups {
		if len(g.Members) > 1 {
			var m []string
			for _, r := range g.Members {
				m = append(m, r.Path)
			}
			merged = append(merged, g.Pattern+" = "+strings.Join(m, " | "))
		}
	}
	want := "GET /api/v1/pipelines/{seg3}/{seg4} = /api/v1/pipelines/runs/{runId} | /api/v1/pipelines/{pipelineId}/spec | /api/v1/pipelines/{pipelineId}/export | /api/v1/pipelines/{pipelineId}/webhook | /api/v1/pipelines/{pipelineId}/runs"
	if len(merged) != 1 || merged[0] != want {
		t.Errorf("merged groups:\n%v\nwant\n%s", merged, want)
	}
	// ServeMux accepts the result (it panics on conflicts).
	mux := http.NewServeMux()
	for _, g := range groups {
		mux.Handle(g.Pattern, http.NotFoundHandler())
	}
}

// TestOpenAPIRunModels: the documented run shapes (list item, detail, the
// detail's definition) have exactly the fields the handlers send.
func TestOpenAPIRunModels(t *testing.T) {
	doc := openAPI(t)
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	detail := schemas["RunDetail"].(map[string]any)
	cases := []struct {
		name   string
		schema map[string]any
		model  any
	}{
		{"Run", schemas["Run"].(map[string]any), &runJSON{}},
		{"RunDetail", detail, &runDetailJSON{}},
		{"RunDetail.definition", detail["properties"].(map[string]any)["definition"].(map[string]any), &runDefinitionJSON{}},
	}
	for _, c := range cases {
		var documented []string
		for k := range c.schema["properties"].(map[string]any) {
			documented = append(documented, k)
		}
		sort.Strings(documented)
		sent := append([]string(nil), apikit.FieldsOf(reflectType(c.model)).Names...)
		sort.Strings(sent)
		if strings.Join(documented, ",") != strings.Join(sent, ",") {
			t.Errorf("%s: documented %v, the model sends %v", c.name, documented, sent)
		}
	}
	// The detail's include parameter is documented.
	op := doc["paths"].(map[string]any)["/api/v1/pipelines/runs/{runId}"].(map[string]any)["get"].(map[string]any)
	var params []string
	for _, p := range asList(op["parameters"]) {
		params = append(params, resolve(doc, p).(map[string]any)["name"].(string))
	}
	if strings.Join(params, ",") != "include" {
		t.Errorf("getRun documents the query parameters %v, want include", params)
	}
}

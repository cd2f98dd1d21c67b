package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/apikit"
)

var seedCreate = map[string]any{
	"projectId":        "proj_xxx",
	"name":             "build-main",
	"description":      "main branch build",
	"repoUrl":          "https://github.com/org/repo.git",
	"defaultBranch":    "main",
	"pipelineFilePath": ".arcentra/pipeline.yaml",
	"saveMode":         "pr",
	"prTargetBranch":   "main",
	"metadata":         map[string]any{"owner": "devops"},
	"createdBy":        "user_xxx",
}

func TestPipelineCRUD(t *testing.T) {
	e := newEnv(t)

	// Create with the seed's body.
	r := e.do("POST", "/api/v1/pipelines", seedCreate).must(t, http.StatusCreated)
	p := r.detail()
	pid := p["pipelineId"].(string)
	if !apikit.IsID(pid, "pl_") || len(pid) != 23 {
		t.Errorf("pipelineId %q: want pl_ + 20 base32 characters", pid)
	}
	if r.header.Get("Location") != "/api/v1/pipelines/"+pid {
		t.Errorf("Location = %q", r.header.Get("Location"))
	}
	for k, v := range seedCreate {
		if k == "metadata" {
			if p["metadata"].(map[string]any)["owner"] != "devops" {
				t.Errorf("metadata = %v", p["metadata"])
			}
			continue
		}
		if p[k] != v {
			t.Errorf("%s = %v, want %v", k, p[k], v)
		}
	}
	if p["createdAt"] != "2026-03-02T10:00:00.000Z" || p["updatedAt"] != "2026-03-02T10:00:00.000Z" {
		t.Errorf("timestamps %v %v: want ISO-8601 UTC from the clock", p["createdAt"], p["updatedAt"])
	}
	if p["headVersion"] != 0.0 || p["headCommitSha"] != "" || p["lastExecutionId"] != "" || p["lastRunState"] != "" ||
		p["lastStarted"] != nil || p["lastEnded"] != nil {
		t.Errorf("a new pipeline has no head and no status: %v", p)
	}

	// Get.
	got := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()
	if got["name"] != "build-main" || got["pipelineId"] != pid {
		t.Errorf("get: %v", got)
	}

	// Update: only the fields present change.
	e.clock.Advance(time.Minute)
	up := e.do("PUT", "/api/v1/pipelines/"+pid, map[string]any{"description": "new words", "saveMode": "direct"}).must(t, 200).detail()
	if up["description"] != "new words" || up["saveMode"] != "direct" || up["name"] != "build-main" || up["repoUrl"] != seedCreate["repoUrl"] {
		t.Errorf("update: %v", up)
	}
	if up["updatedAt"] != "2026-03-02T10:01:00.000Z" || up["createdAt"] != "2026-03-02T10:00:00.000Z" {
		t.Errorf("update timestamps: %v %v", up["createdAt"], up["updatedAt"])
	}
	// An empty update changes nothing but is fine.
	e.do("PUT", "/api/v1/pipelines/"+pid, map[string]any{}).must(t, 200)

	// List finds it.
	l := e.do("GET", "/api/v1/pipelines?projectId=proj_xxx", nil).must(t, 200).detail()
	if l["total"] != 1.0 || len(l["items"].([]any)) != 1 {
		t.Errorf("list: %v", l)
	}

	// Delete: success without detail.
	d := e.do("DELETE", "/api/v1/pipelines/"+pid, nil).must(t, 200)
	if _, has := d.env["detail"]; has {
		t.Errorf("delete answer has a detail: %s", d.body)
	}
	e.do("GET", "/api/v1/pipelines/"+pid, nil).mustErr(t, 404, "pipeline "+pid+" not found")
	e.do("DELETE", "/api/v1/pipelines/"+pid, nil).mustErr(t, 404, "not found")
	e.do("PUT", "/api/v1/pipelines/"+pid, map[string]any{"description": "x"}).mustErr(t, 404, "not found")
}

func TestPipelineCreateErrors(t *testing.T) {
	e := newEnv(t)
	e.createPipeline("taken", nil)
	base := func(kv ...any) map[string]any {
		m := map[string]any{"projectId": "proj_demo", "name": "p1"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	tests := []struct {
		name   string
		body   any
		status int
		msg    string
	}{
		{"typo", base("nmae", "x"), 400, `body: unknown field "nmae" (did you mean "name"?)`},
		{"case typo", base("projectID", "x"), 400, `unknown field "projectID" (did you mean "projectId"?)`},
		{"unknown no hint", base("colour", "red"), 400, `unknown field "colour"; accepted: projectId, name`},
		{"two unknown", base("a1", 1, "b2", 2), 400, `body: unknown fields "a1", "b2"`},
		{"no name", base("name", nil), 400, "body.name: required"},
		{"no project", base("projectId", nil), 400, "body.projectId: required"},
		{"wrong type", base("name", 5), 400, "body.name: must be a string, got number"},
		{"metadata not object", base("metadata", "x"), 400, "body.metadata: must be an object, got string"},
		{"traversal name", base("name", "../etc"), 400, `body.name: must be 1 to 100 letters`},
		{"slash name", base("name", "a/b"), 400, "body.name"},
		{"dotdot name", base("name", "a..b"), 400, "body.name"},
		{"nul name", base("name", "a\x00b"), 400, "body.name"},
		{"traversal project", base("projectId", "../../x"), 400, "body.projectId"},
		{"file path escape", base("pipelineFilePath", "../secret.yaml"), 400, "body.pipelineFilePath: must be a clean relative path"},
		{"file path absolute", base("pipelineFilePath", "/etc/passwd"), 400, "body.pipelineFilePath"},
		{"file path unclean", base("pipelineFilePath", "a/./b.yaml"), 400, "body.pipelineFilePath"},
		{"bad branch", base("defaultBranch", "feature..x"), 400, `body.defaultBranch: "feature..x" is not a valid git branch name`},
		{"bad saveMode", base("saveMode", "push"), 400, `body.saveMode: must be one of direct, pr; got "push"`},
		{"pr without repo", base("saveMode", "pr"), 400, `body.saveMode: "pr" needs body.repoUrl`},
		{"bad repo", base("repoUrl", "javascript:alert(1)"), 400, "body.repoUrl"},
		{"control in createdBy", base("createdBy", "bob\x1b[31m"), 400, "body.createdBy: control character"},
		{"long description", base("description", strings.Repeat("x", 4097)), 400, "body.description: at most 4096 characters"},
		{"duplicate name", base("name", "taken"), 409, `project "proj_demo" already has a pipeline named "taken"`},
		{"legacy content", base("content", "namespace: a"), 400, "body.content: raw definition text is not accepted"},
		{"format without spec", base("format", "yaml"), 400, "body.format: only meaningful with body.spec"},
		{"array body", rawBody(`[1,2]`), 400, "body: must be a JSON object, got an array"},
		{"string body", rawBody(`"x"`), 400, "body: must be a JSON object, got a string"},
		{"malformed", rawBody("{\n  \"name\": \"x\",\n  oops\n}"), 400, "body: malformed JSON at line 3, column 3"},
		{"truncated", rawBody(`{"name": "x"`), 400, "body: malformed JSON"},
		{"trailing", rawBody(`{"projectId":"p","name":"n"} {}`), 400, "body: unexpected data after the JSON object"},
		{"duplicate field", rawBody(`{"projectId":"p","name":"n","name":"m"}`), 400, `body: field "name" given twice`},
		{"empty", rawBody(``), 400, "body: empty; send a JSON object"},
		{"huge int", rawBody(`{"projectId":"p","name":"n","metadata":{"a":1e999}}`), 400, "body.metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do("POST", "/api/v1/pipelines", tt.body).mustErr(t, tt.status, tt.msg)
		})
	}
	// Nothing of the above was created.
	l := e.do("GET", "/api/v1/pipelines", nil).must(t, 200).detail()
	if l["total"] != 1.0 {
		t.Errorf("total = %v, want only the first pipeline", l["total"])
	}
}

func TestPipelineUpdateErrors(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("one", nil)
	e.createPipeline("two", nil)
	tests := []struct {
		body   any
		status int
		msg    string
	}{
		{map[string]any{"spec": goodSpec}, 400, "body.spec: the definition is not changed by an update; save it with POST"},
		{map[string]any{"createdBy": "x"}, 400, "body.createdBy: is set when the pipeline is created"},
		{map[string]any{"name": ""}, 400, "body.name: required"},
		{map[string]any{"name": "two"}, 409, `already has a pipeline named "two"`},
		{map[string]any{"saveMode": "pr"}, 400, `"pr" needs body.repoUrl`},
		{map[string]any{"descripton": "x"}, 400, `(did you mean "description"?)`},
	}
	for _, tt := range tests {
		e.do("PUT", "/api/v1/pipelines/"+pid, tt.body).mustErr(t, tt.status, tt.msg)
	}
	got := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()
	if got["name"] != "one" || got["saveMode"] != "direct" {
		t.Errorf("a refused update changed the pipeline: %v", got)
	}
}

func TestPipelineIDs(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{
		"/api/v1/pipelines/x",
		"/api/v1/pipelines/PL_AAAAAAAAAAAAAAAAAAAA",
		"/api/v1/pipelines/run_aaaaaaaaaaaaaaaaaaaa",
		"/api/v1/pipelines/pl_aaaa%2F..%2Fbbbbbbbbbb",
		"/api/v1/pipelines/pl_aaaaaaaaaaaa%00",
		"/api/v1/pipelines/pl_aaaaaaaaaa%20bb",
		"/api/v1/pipelines/" + "pl_" + strings.Repeat("a", 41),
	} {
		r := e.do("GET", path, nil)
		if r.status != 400 {
			t.Errorf("GET %s: status %d, want 400: %s", path, r.status, r.body)
		}
	}
	e.do("GET", "/api/v1/pipelines/nope", nil).mustErr(t, 400, `path parameter pipelineId: "nope" is not a pipeline id; pipeline ids are pl_ followed by`)
	e.do("GET", "/api/v1/pipelines/pl_aaaaaaaaaaaaaaaaaaaa", nil).mustErr(t, 404, "pipeline pl_aaaaaaaaaaaaaaaaaaaa not found")
	// Non-canonical paths are refused, not redirected.
	for _, path := range []string{"/api/v1/pipelines/../pipelines", "/api/v1//pipelines", "/api/v1/pipelines/./x"} {
		req, _ := http.NewRequest("GET", e.http.URL+path, nil)
		req.URL.Opaque = path // keep the dots: the client would clean them
		req.Header.Set("Authorization", "Bearer "+e.token)
		res, err := e.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Errorf("GET %s: status %d, want 400", path, res.StatusCode)
		}
	}
}

func TestPipelineListPagination(t *testing.T) {
	e := newEnv(t)
	for i := range 25 {
		e.createPipeline(fmt.Sprintf("svc-%02d", i), nil)
		e.clock.Advance(time.Second)
	}
	e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "proj_other", "name": "Other-SVC"}).must(t, 201)

	list := func(q string) map[string]any { return e.do("GET", "/api/v1/pipelines"+q, nil).must(t, 200).detail() }
	count := func(d map[string]any) int { return len(d["items"].([]any)) }

	d := list("")
	if count(d) != 20 || d["total"] != 26.0 || d["page"] != 1.0 || d["pageSize"] != 20.0 {
		t.Errorf("defaults: %d items, %v", count(d), d["total"])
	}
	d = list("?projectId=proj_demo&pageSize=10&page=3")
	if count(d) != 5 || d["total"] != 25.0 {
		t.Errorf("last page: %d items, total %v", count(d), d["total"])
	}
	d = list("?projectId=proj_demo&pageSize=10&page=4")
	if count(d) != 0 || d["total"] != 25.0 {
		t.Errorf("past the end: %d items, total %v", count(d), d["total"])
	}
	if d := list("?pageSize=100"); count(d) != 26 {
		t.Errorf("pageSize=100: %d items", count(d))
	}
	if d := list("?pageSize=1&page=26"); count(d) != 1 {
		t.Errorf("pageSize=1 page=26: %d items", count(d))
	}
	// Pages do not overlap and cover everything.
	seen := map[string]bool{}
	for pg := 1; pg <= 3; pg++ {
		for _, it := range list(fmt.Sprintf("?projectId=proj_demo&pageSize=10&page=%d", pg))["items"].([]any) {
			id := it.(map[string]any)["pipelineId"].(string)
			if seen[id] {
				t.Errorf("%s on two pages", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != 25 {
		t.Errorf("pages covered %d pipelines, want 25", len(seen))
	}
	// Name search is a case-insensitive substring.
	if d := list("?name=svc"); d["total"] != 26.0 {
		t.Errorf("name=svc: total %v", d["total"])
	}
	if d := list("?name=%25"); d["total"] != 0.0 {
		t.Errorf("name=%%: total %v, want a literal match (none)", d["total"])
	}
	if d := list("?name=SVC-0&projectId=proj_demo"); d["total"] != 10.0 {
		t.Errorf("name=SVC-0: total %v", d["total"])
	}

	bad := []struct{ q, msg string }{
		{"?pageSize=500", `query parameter pageSize: must be an integer between 1 and 100, got "500"`},
		{"?pageSize=0", `query parameter pageSize: must be an integer between 1 and 100, got "0"`},
		{"?pageSize=-1", "query parameter pageSize"},
		{"?pageSize=1.5", "query parameter pageSize"},
		{"?pageSize=", `got ""`},
		{"?page=0", `query parameter page: must be an integer between 1 and 1000000, got "0"`},
		{"?page=abc", "query parameter page"},
		{"?page=99999999999999999999", "query parameter page"},
		{"?page=1&page=2", "query parameter page: given 2 times"},
		{"?pagesize=10", `query: unknown parameter "pagesize" (did you mean "pageSize"?)`},
		{"?search=x", `query: unknown parameter "search"`},
		{"?name=%zz", "query: malformed"},
		{"?projectId=../x", "query parameter projectId"},
	}
	for _, b := range bad {
		e.do("GET", "/api/v1/pipelines"+b.q, nil).mustErr(t, 400, b.msg)
	}
}

func TestPipelineBodyLimits(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.MaxBodyBytes = 4 << 10 })
	big := map[string]any{"projectId": "proj_demo", "name": "big", "metadata": map[string]any{"blob": strings.Repeat("x", 5<<10)}}
	e.do("POST", "/api/v1/pipelines", big).mustErr(t, 413, "body: larger than the limit of 4 KiB")

	// Without a Content-Length (chunked), the limit still holds while reading.
	req, _ := http.NewRequest("POST", e.http.URL+"/api/v1/pipelines", strings.NewReader(`{"projectId":"proj_demo","name":"big","description":"`+strings.Repeat("x", 8<<10)+`"}`))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+e.token)
	res, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Errorf("chunked oversize: status %d, want 413", res.StatusCode)
	}

	e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "proj_demo", "name": "n"}, withHeader("Content-Type", "text/yaml")).
		mustErr(t, 415, `header Content-Type: must be application/json, got "text/yaml"`)
	e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "proj_demo", "name": "n"}, withHeader("Content-Type", "application/json; charset=utf-8")).
		must(t, 201)
}

func TestDefaultBodyLimitIsOneMiB(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{"projectId": "proj_demo", "name": "big", "metadata": map[string]any{"blob": strings.Repeat("x", 1<<20)}}
	e.do("POST", "/api/v1/pipelines", body).mustErr(t, 413, "body: larger than the limit of 1 MiB")
	// Half a MiB passes the body limit (free-form fields such as metadata
	// have their own, smaller one: the spec is not free-form).
	delete(body, "metadata")
	body["spec"] = map[string]any{"namespace": "big", "jobs": []any{map[string]any{"name": "a",
		"steps": []any{map[string]any{"run": "echo " + strings.Repeat("x", 1<<19)}}}}}
	e.do("POST", "/api/v1/pipelines", body).must(t, 201)
	body["spec"], body["name"] = nil, "big2"
	body["metadata"] = map[string]any{"blob": strings.Repeat("x", 1<<19)}
	e.do("POST", "/api/v1/pipelines", body).mustErr(t, 400, "body.metadata: 524299 bytes, at most 64 KiB")
}

func TestPipelineDeleteWithActiveRun(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("busy", map[string]any{"spec": goodSpec})
	run := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()
	e.do("DELETE", "/api/v1/pipelines/"+pid, nil).mustErr(t, 409, "has an active run")
	e.do("POST", "/api/v1/pipelines/"+pid+"/runs/"+run["runId"].(string)+"/stop", nil).must(t, 200)
	e.do("DELETE", "/api/v1/pipelines/"+pid, nil).must(t, 200)
}

// TestPipelineStatusFields: the flat status fields follow the latest run.
func TestPipelineStatusFields(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("status", map[string]any{"spec": goodSpec})
	run := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()
	rid := run["runId"].(string)
	e.do("POST", "/api/v1/pipelines/"+pid+"/runs/"+rid+"/stop", map[string]any{"reason": "enough"}).must(t, 200)
	p := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()
	if p["lastExecutionId"] != rid || p["lastRunState"] != "cancelled" || p["lastStarted"] == nil || p["lastEnded"] == nil {
		t.Errorf("status fields after a stopped run: %v %v %v %v", p["lastExecutionId"], p["lastRunState"], p["lastStarted"], p["lastEnded"])
	}
}

// TestPipelineEventSinks: the pipeline's own CDEvents sinks are validated,
// stored, replaced by an update, and shown without passwords.
func TestPipelineEventSinks(t *testing.T) {
	e := newEnv(t)
	e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "proj_a", "name": "bad", "eventSinks": []string{"https://ok.example/e", "ftp://x/y"}}).
		mustErr(t, 400, "body.eventSinks[1]: want an absolute http(s) URL")
	r := e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "proj_a", "name": "sinks",
		"eventSinks": []string{"https://user:s3cret@events.example/cd"}}).must(t, 201)
	d := r.detail()
	if got := fmt.Sprint(d["eventSinks"]); got != "[https://user:xxxxx@events.example/cd]" {
		t.Fatalf("eventSinks shown as %s", got)
	}
	pid := d["pipelineId"].(string)
	p, err := e.st.GetPipeline(t.Context(), pid)
	if err != nil || len(p.EventSinks) != 1 || p.EventSinks[0] != "https://user:s3cret@events.example/cd" {
		t.Fatalf("stored sinks %v (%v)", p.EventSinks, err)
	}
	e.do("PUT", "/api/v1/pipelines/"+pid, map[string]any{"eventSinks": []string{}}).must(t, 200)
	if p, _ := e.st.GetPipeline(t.Context(), pid); len(p.EventSinks) != 0 {
		t.Fatalf("after clearing: %v", p.EventSinks)
	}
}

// TestInvalidTextRefused: text that encoding/json would store as U+FFFD
// (invalid UTF-8, a lone surrogate escape) is refused naming the field, on
// every route that decodes a body, and so are free-form values nested past
// the limit; nothing is stored.
func TestInvalidTextRefused(t *testing.T) {
	e := newEnv(t)
	admin := withToken(e.addToken("root", "admin_root", "admin", nil))
	for _, tc := range []struct {
		method, path, body, field string
		opts                      []reqOpt
	}{
		{"POST", "/api/v1/pipelines", `{"projectId":"p","name":"a","description":"x\ud800"}`, "body.description", nil},
		{"POST", "/api/v1/pipelines", "{\"projectId\":\"p\",\"name\":\"a\",\"defaultBranch\":\"ma\xffin\"}", "body.defaultBranch", nil},
		{"POST", "/api/v1/pipelines", `{"projectId":"p","name":"a","createdBy":"\udc00bob"}`, "body.createdBy", nil},
		{"POST", "/api/v1/pipelines", `{"projectId":"p","name":"a","metadata":` + strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100) + `}`, "body.metadata", nil},
		{"POST", "/api/v1/registration-tokens", `{"name":"pool\ud800"}`, "body.name", []reqOpt{admin}},
	} {
		e.do(tc.method, tc.path, rawBody(tc.body), tc.opts...).mustErr(t, 400, tc.field+":")
	}
	if list := e.do("GET", "/api/v1/pipelines", nil).must(t, 200).detail(); list["total"] != 0.0 {
		t.Fatalf("pipelines stored: %v", list)
	}
}

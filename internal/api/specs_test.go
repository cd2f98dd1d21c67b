package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/spec"
)

func TestSpecSaveAndGet(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("build", nil)
	e.do("GET", "/api/v1/pipelines/"+pid+"/spec", nil).mustErr(t, 404, "has no saved definition yet")

	v1 := e.saveSpec(pid, map[string]any{"spec": goodSpec, "format": "yaml", "commitMessage": "first", "requestId": "req-1", "editor": "user_bob"})
	if v1["version"] != 1.0 || v1["replayed"] != false || v1["editor"] != "user_bob" || v1["requestId"] != "req-1" || v1["format"] != "yaml" {
		t.Fatalf("first save: %v", v1)
	}
	sha1 := v1["headCommitSha"].(string)

	// headCommitSha is the content hash of the canonical JSON, and the stored
	// spec is that canonical JSON.
	got := e.do("GET", "/api/v1/pipelines/"+pid+"/spec", nil).must(t, 200).detail()
	canonical, err := json.Marshal(got["spec"])
	if err != nil {
		t.Fatal(err)
	}
	p, err := spec.Parse(canonical, spec.Options{Catalog: action.Builtins()})
	if err != nil {
		t.Fatalf("the stored spec does not parse again: %v", err)
	}
	again, _ := json.Marshal(p)
	sum := sha256.Sum256(again)
	if hex.EncodeToString(sum[:]) != sha1 {
		t.Errorf("headCommitSha %s is not the SHA-256 of the canonical JSON", sha1)
	}
	if got["headCommitSha"] != sha1 || got["format"] != "yaml" || got["version"] != 1.0 || got["commitSha"] != sha1 || got["commitMessage"] != "first" {
		t.Errorf("get spec: %v", got)
	}
	pl := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()
	if pl["headVersion"] != 1.0 || pl["headCommitSha"] != sha1 {
		t.Errorf("pipeline head: %v %v", pl["headVersion"], pl["headCommitSha"])
	}

	// The same definition written differently (key order, layout) hashes the
	// same.
	reordered := rawBody(`{"format":"json","requestId":"req-2","spec":{"version":"v1","jobs":[{"steps":[{"args":{"go_version":"1.25"},"uses":"actions/go-build@v1","name":"compile"},{"run":"go test ./...","name":"test"}],"name":"build"}],"namespace":"demo.pipeline"}}`)
	v2 := e.do("POST", "/api/v1/pipelines/"+pid+"/spec/save", reordered).must(t, 200).detail()
	if v2["version"] != 2.0 || v2["headCommitSha"] != sha1 || v2["format"] != "json" {
		t.Errorf("reordered save: %v (want version 2 with the same hash)", v2)
	}

	// A change based on the current head.
	v3 := e.saveSpec(pid, map[string]any{"spec": specWithStep("echo v3"), "expectedHeadCommitSha": sha1, "requestId": "req-3"})
	sha3 := v3["headCommitSha"].(string)
	if v3["version"] != 3.0 || sha3 == sha1 {
		t.Fatalf("third save: %v", v3)
	}

	// A stale head: 409 with the current one.
	r := e.do("POST", "/api/v1/pipelines/"+pid+"/spec/save", map[string]any{"spec": specWithStep("echo v4"), "expectedHeadCommitSha": sha1, "requestId": "req-4"})
	r.mustErr(t, 409, "body.expectedHeadCommitSha: stale: the pipeline's head is now "+sha3)
	if r.env["currentHeadCommitSha"] != sha3 {
		t.Errorf("currentHeadCommitSha = %v, want %s", r.env["currentHeadCommitSha"], sha3)
	}
	e.do("POST", "/api/v1/pipelines/"+pid+"/spec/save", map[string]any{"spec": goodSpec, "expectedHeadCommitSha": "abc123"}).
		mustErr(t, 409, "stale")

	// Replays return the first result, even after the head moved on, and
	// write nothing.
	replay := e.saveSpec(pid, map[string]any{"spec": specWithStep("echo v3"), "expectedHeadCommitSha": sha1, "requestId": "req-3"})
	if replay["version"] != 3.0 || replay["headCommitSha"] != sha3 || replay["replayed"] != true {
		t.Errorf("replay: %v", replay)
	}
	e.saveSpec(pid, map[string]any{"spec": specWithStep("echo v4"), "requestId": "req-4"})
	replay = e.saveSpec(pid, map[string]any{"spec": specWithStep("echo v3"), "expectedHeadCommitSha": sha1, "requestId": "req-3"})
	if replay["version"] != 3.0 || replay["replayed"] != true {
		t.Errorf("replay after the head moved: %v", replay)
	}
	if h := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()["headVersion"]; h != 4.0 {
		t.Errorf("headVersion %v after replays, want 4", h)
	}
	// The same requestId with a different definition is refused, not
	// silently answered with the old version.
	e.do("POST", "/api/v1/pipelines/"+pid+"/spec/save", map[string]any{"spec": specWithStep("echo other"), "requestId": "req-3"}).
		mustErr(t, 409, `body.requestId: "req-3" was already used to save a different definition (version 3`)

	// Old versions stay readable.
	old := e.do("GET", "/api/v1/pipelines/"+pid+"/spec?version=1", nil).must(t, 200).detail()
	if old["version"] != 1.0 || old["commitSha"] != sha1 || old["headCommitSha"] == sha1 {
		t.Errorf("version 1: %v", old)
	}
	e.do("GET", "/api/v1/pipelines/"+pid+"/spec?version=9", nil).mustErr(t, 404, "has no definition version 9 (its newest is 4)")
	e.do("GET", "/api/v1/pipelines/"+pid+"/spec?version=0", nil).mustErr(t, 400, "query parameter version")
	e.do("GET", "/api/v1/pipelines/"+pid+"/spec?v=1", nil).mustErr(t, 400, `unknown parameter "v"`)

	// Saves without requestId are all distinct versions.
	a := e.saveSpec(pid, map[string]any{"spec": goodSpec})
	b := e.saveSpec(pid, map[string]any{"spec": goodSpec})
	if a["version"] == b["version"] || a["replayed"] == true || b["replayed"] == true {
		t.Errorf("two saves without requestId: %v %v", a, b)
	}
}

func TestSpecSaveErrors(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("build", nil)
	path := "/api/v1/pipelines/" + pid + "/spec/save"
	invalid := map[string]any{
		"namespace": "demo",
		"jobs": []any{map[string]any{"name": "a", "steps": []any{
			map[string]any{"uses": "actions/go-buld@v1"},
			map[string]any{"run": "x", "timeout": "soon"},
		}}},
		"stagez": 1,
	}
	r := e.do("POST", path, map[string]any{"spec": invalid, "requestId": "bad-1"}).mustErr(t, 400, "body.spec: invalid definition:", "more problems, listed in errors")
	errs, _ := r.env["errors"].([]any)
	if len(errs) < 3 {
		t.Fatalf("errors: %v, want every problem", r.env["errors"])
	}
	var paths []string
	for _, x := range errs {
		m := x.(map[string]any)
		paths = append(paths, m["path"].(string))
		if m["message"] == "" || m["line"] == 0.0 || m["column"] == 0.0 {
			t.Errorf("error without message or position: %v", m)
		}
	}
	joined := strings.Join(paths, " ")
	for _, want := range []string{"stagez", "jobs[0].steps[0].uses", "jobs[0].steps[1].timeout"} {
		if !strings.Contains(joined, want) {
			t.Errorf("errors %v: no %s", paths, want)
		}
	}
	// Nothing saved.
	if h := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()["headVersion"]; h != 0.0 {
		t.Errorf("an invalid spec was saved: headVersion %v", h)
	}

	tests := []struct {
		body   any
		status int
		msg    string
	}{
		{map[string]any{"content": "namespace: a"}, 400, "body.content: raw definition text is not accepted; send the definition as a JSON object"},
		{map[string]any{"spec": "namespace: a\njobs: []"}, 400, "body.spec: got a string; raw definition text is not accepted"},
		{map[string]any{"spec": []any{1}}, 400, "body.spec: must be a JSON object"},
		{map[string]any{}, 400, "body.spec: required"},
		{map[string]any{"spec": nil}, 400, "body.spec: required"},
		{map[string]any{"spec": goodSpec, "format": "toml"}, 400, `body.format: must be one of json, yaml, yml; got "toml"`},
		{map[string]any{"spec": goodSpec, "expectedHeadCommitSha": "XYZ"}, 400, "body.expectedHeadCommitSha: must be the lowercase hex"},
		{map[string]any{"spec": goodSpec, "requestId": "../../x"}, 400, "body.requestId: must be 1 to 128"},
		{map[string]any{"spec": goodSpec, "requestId": strings.Repeat("r", 129)}, 400, "body.requestId"},
		{map[string]any{"spec": goodSpec, "editor": "a\x00b"}, 400, "body.editor: control character"},
		{map[string]any{"spec": goodSpec, "commitMesage": "x"}, 400, `(did you mean "commitMessage"?)`},
		{map[string]any{"spec": map[string]any{}}, 400, "body.spec: invalid definition"},
	}
	for _, tt := range tests {
		e.do("POST", path, tt.body).mustErr(t, tt.status, tt.msg)
	}
	e.do("POST", "/api/v1/pipelines/pl_bbbbbbbbbbbbbbbbbbbb/spec/save", map[string]any{"spec": goodSpec}).mustErr(t, 404, "not found")
	e.do("POST", "/api/v1/pipelines/pl_bbbbbbbbbbbbbbbbbbbb/spec/validate", map[string]any{"spec": goodSpec}).mustErr(t, 404, "not found")

	// A save with a head when there is none.
	e.do("POST", path, map[string]any{"spec": goodSpec, "expectedHeadCommitSha": "abc123"}).
		mustErr(t, 409, "has no saved definition yet; leave expectedHeadCommitSha out")
}

func TestSpecOversized(t *testing.T) {
	// A body limit above the definition limit lets an oversized spec reach
	// the spec check.
	e := newEnvWith(t, func(c *Config) { c.MaxBodyBytes = 6 << 20 })
	pid := e.createPipeline("big", nil)
	big := specWithStep(strings.Repeat("x", 5<<20))
	e.do("POST", "/api/v1/pipelines/"+pid+"/spec/save", map[string]any{"spec": big}).mustErr(t, 400, "body.spec:", "definitions are limited to 4 MiB")
	e.do("POST", "/api/v1/pipelines/"+pid+"/spec/validate", map[string]any{"spec": big}).mustErr(t, 400, "definitions are limited to 4 MiB")
}

func TestSpecValidate(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("build", nil)
	path := "/api/v1/pipelines/" + pid + "/spec/validate"
	// The seed's example.
	ok := e.do("POST", path, map[string]any{"spec": goodSpec, "format": "yaml"}).must(t, 200).detail()
	if ok["valid"] != true || len(ok["errors"].([]any)) != 0 {
		t.Errorf("valid spec: %v", ok)
	}
	// Positions are in the spec as sent.
	body := rawBody("{\"format\": \"json\", \"spec\": {\n  \"namespace\": \"a\",\n  \"jobs\": [{\"name\": \"j\", \"steps\": [{\"uses\": \"actions/nope@v1\"}]}]\n}}")
	bad := e.do("POST", path, body).must(t, 200).detail()
	errs := bad["errors"].([]any)
	if bad["valid"] != false || len(errs) != 1 {
		t.Fatalf("invalid spec: %v", bad)
	}
	first := errs[0].(map[string]any)
	if first["path"] != "jobs[0].steps[0].uses" || first["line"] != 3.0 || first["column"] == 0.0 || !strings.Contains(first["message"].(string), "actions/nope@v1") {
		t.Errorf("error: %v", first)
	}
	e.do("POST", path, map[string]any{"content": "x"}).mustErr(t, 400, "raw definition text is not accepted")
	e.do("POST", path, map[string]any{"spec": goodSpec, "format": "xml"}).mustErr(t, 400, "body.format")
	// Validation saves nothing.
	if h := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()["headVersion"]; h != 0.0 {
		t.Errorf("validate saved a version: %v", h)
	}
}

// TestSpecSaveConcurrentReplay: 20 saves with one requestId at once make one
// version, and every caller gets it.
func TestSpecSaveConcurrentReplay(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("race", nil)
	answers := e.parallel(20, "POST", "/api/v1/pipelines/"+pid+"/spec/save", map[string]any{"spec": goodSpec, "requestId": "same-request"})
	var results []map[string]any
	for _, a := range answers {
		results = append(results, a.must(t, http.StatusOK).detail())
	}
	fresh := 0
	for _, r := range results {
		if r["version"] != 1.0 || r["headCommitSha"] != results[0]["headCommitSha"] {
			t.Errorf("result %v differs from %v", r, results[0])
		}
		if r["replayed"] == false {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d saves report a new version, want exactly 1", fresh)
	}
	if _, err := e.st.GetSpec(context.Background(), pid, 2); err == nil {
		t.Error("a second version exists")
	}
	if h := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, http.StatusOK).detail()["headVersion"]; h != 1.0 {
		t.Errorf("headVersion %v, want 1", h)
	}
}

func TestCreatePipelineWithSpec(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "proj_demo", "name": "inline", "spec": goodSpec, "format": "yml"}).must(t, 201)
	p := r.detail()
	if p["headVersion"] != 1.0 || p["headCommitSha"] == "" {
		t.Fatalf("inline spec not saved as version 1: %v", p)
	}
	got := e.do("GET", "/api/v1/pipelines/"+p["pipelineId"].(string)+"/spec", nil).must(t, 200).detail()
	if got["format"] != "yml" || got["headCommitSha"] != p["headCommitSha"] {
		t.Errorf("spec: %v", got)
	}
	// An invalid inline spec creates nothing.
	e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "proj_demo", "name": "broken", "spec": map[string]any{"namespace": "x"}}).
		mustErr(t, 400, "body.spec: invalid definition")
	l := e.do("GET", "/api/v1/pipelines?name=broken", nil).must(t, 200).detail()
	if l["total"] != 0.0 {
		t.Errorf("an invalid inline spec left a pipeline: %v", l)
	}
}

// goodSpecText is goodSpec as written in a pipeline.yaml file, with comments
// and blank lines.
const goodSpecText = `# The demo pipeline, as written.
namespace: demo.pipeline
version: v1

jobs:
  - name: build # one job
    steps:
      - name: compile
        uses: actions/go-build@v1
        args:
          go_version: "1.25"
      - name: test
        run: go test ./...
`

// typoSpecText has a typo on line 7 (a leading blank line and a comment
// above count): stepz instead of steps.
const typoSpecText = "\n" + `# a comment that a re-rendering would drop
namespace: demo.pipeline
version: v1
jobs:
  - name: build
    stepz:
      - name: test
        run: go test ./...
`

// specErrorAt returns the first error of a list whose path mentions frag.
func specErrorAt(t *testing.T, errs []any, frag string) map[string]any {
	t.Helper()
	for _, x := range errs {
		m := x.(map[string]any)
		if p, _ := m["path"].(string); strings.Contains(p, frag) {
			return m
		}
	}
	t.Fatalf("no error with a path mentioning %q: %v", frag, errs)
	return nil
}

// TestSpecValidateText: the definition as written, in text, is checked
// as a definition file is, with positions in the text.
func TestSpecValidateText(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("build", nil)
	path := "/api/v1/pipelines/" + pid + "/spec/validate"

	ok := e.do("POST", path, map[string]any{"text": goodSpecText, "format": "yaml"}).must(t, 200).detail()
	if ok["valid"] != true || len(ok["errors"].([]any)) != 0 {
		t.Errorf("valid text: %v", ok)
	}

	bad := e.do("POST", path, map[string]any{"text": typoSpecText, "format": "yaml"}).must(t, 200).detail()
	errs, _ := bad["errors"].([]any)
	if bad["valid"] != false || len(errs) == 0 {
		t.Fatalf("text with a typo: %v", bad)
	}
	typo := specErrorAt(t, errs, "stepz")
	if typo["line"] != 7.0 || typo["column"] == 0.0 || typo["message"] == "" {
		t.Errorf("typo error %v: want line 7 of the text as sent", typo)
	}

	// Both forms at once are refused, on validate and on save.
	both := map[string]any{"spec": goodSpec, "text": goodSpecText}
	const bothMsg = "body: send the definition either as spec (an object) or as text (as written), not both"
	e.do("POST", path, both).mustErr(t, 400, bothMsg)
	e.do("POST", "/api/v1/pipelines/"+pid+"/spec/save", both).mustErr(t, 400, bothMsg)
	// Validation saves nothing.
	if h := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()["headVersion"]; h != 0.0 {
		t.Errorf("validate saved a version: %v", h)
	}
}

// TestSpecSaveText: a definition saved as text is stored as the same
// canonical spec object as the equivalent spec, and hashes the same.
func TestSpecSaveText(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("text", nil)
	other := e.createPipeline("object", nil)
	save := "/api/v1/pipelines/" + pid + "/spec/save"

	v1 := e.saveSpec(pid, map[string]any{"text": goodSpecText, "format": "yaml", "requestId": "text-1"})
	if v1["version"] != 1.0 || v1["format"] != "yaml" || v1["replayed"] != false {
		t.Fatalf("text save: %v", v1)
	}
	sha1 := v1["headCommitSha"].(string)
	obj := e.saveSpec(other, map[string]any{"spec": goodSpec, "format": "yaml"})
	if obj["headCommitSha"] != sha1 {
		t.Errorf("text save hashed %s, the equivalent spec object %v", sha1, obj["headCommitSha"])
	}
	got := e.do("GET", "/api/v1/pipelines/"+pid+"/spec", nil).must(t, 200).detail()
	gotObj := e.do("GET", "/api/v1/pipelines/"+other+"/spec", nil).must(t, 200).detail()
	if got["headCommitSha"] != sha1 || got["version"] != 1.0 || got["format"] != "yaml" {
		t.Errorf("get spec: %v", got)
	}
	a, _ := json.Marshal(got["spec"])
	b, _ := json.Marshal(gotObj["spec"])
	if string(a) != string(b) {
		t.Errorf("spec saved as text:\n%s\nsaved as an object:\n%s", a, b)
	}
	if _, ok := got["spec"].(map[string]any); !ok {
		t.Errorf("the stored spec is not an object: %v", got["spec"])
	}

	// An invalid text: 400, positions in the text, nothing saved.
	r := e.do("POST", save, map[string]any{"text": typoSpecText}).mustErr(t, 400)
	if !strings.HasPrefix(r.errMsg(), "body.text: invalid definition") {
		t.Errorf("errMsg %q, want it to start with body.text: invalid definition", r.errMsg())
	}
	errs, _ := r.env["errors"].([]any)
	if len(errs) == 0 {
		t.Fatalf("no errors: %s", r.body)
	}
	// The first problem is the job left without steps, on its own line (6)
	// of the text as sent; the message says where.
	first := errs[0].(map[string]any)
	if first["path"] != "jobs[0]" || first["line"] != 6.0 || first["column"] != 5.0 {
		t.Errorf("errors[0] = %v, want jobs[0] at line 6, column 5 of the text", first)
	}
	if want := "body.text: invalid definition: jobs[0] (line 6, column 5): "; !strings.HasPrefix(r.errMsg(), want) {
		t.Errorf("errMsg %q, want it to start with %q", r.errMsg(), want)
	}
	if typo := specErrorAt(t, errs, "stepz"); typo["line"] != 7.0 {
		t.Errorf("typo error %v, want line 7", typo)
	}
	if h := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()["headVersion"]; h != 1.0 {
		t.Errorf("headVersion %v after an invalid text, want 1", h)
	}

	// A change based on the head, then a stale one: 409.
	v2text := strings.Replace(goodSpecText, "go test ./...", "go test -race ./...", 1)
	v2 := e.saveSpec(pid, map[string]any{"text": v2text, "expectedHeadCommitSha": sha1})
	sha2 := v2["headCommitSha"].(string)
	if v2["version"] != 2.0 || sha2 == sha1 {
		t.Fatalf("second text save: %v", v2)
	}
	r = e.do("POST", save, map[string]any{"text": goodSpecText, "expectedHeadCommitSha": sha1})
	r.mustErr(t, 409, "body.expectedHeadCommitSha: stale: the pipeline's head is now "+sha2)
	if r.env["currentHeadCommitSha"] != sha2 {
		t.Errorf("currentHeadCommitSha = %v, want %s", r.env["currentHeadCommitSha"], sha2)
	}
	// A replay of the first text save answers its result.
	replay := e.saveSpec(pid, map[string]any{"text": goodSpecText, "format": "yaml", "requestId": "text-1"})
	if replay["version"] != 1.0 || replay["replayed"] != true || replay["headCommitSha"] != sha1 {
		t.Errorf("replay: %v", replay)
	}
}

// TestSpecRenderText: GET …/spec?render=text adds the definition as YAML
// text, in the definition's key order, that saves back to the same hash.
func TestSpecRenderText(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("render", nil)
	other := e.createPipeline("again", nil)
	sha := e.saveSpec(pid, map[string]any{"spec": goodSpec, "format": "yaml"})["headCommitSha"].(string)

	plain := e.do("GET", "/api/v1/pipelines/"+pid+"/spec", nil).must(t, 200).detail()
	if _, has := plain["text"]; has {
		t.Errorf("text without render: %v", plain)
	}
	got := e.do("GET", "/api/v1/pipelines/"+pid+"/spec?render=text", nil).must(t, 200).detail()
	text, _ := got["text"].(string)
	if text == "" {
		t.Fatalf("render=text: no text: %v", got)
	}
	if got["headCommitSha"] != sha || got["spec"] == nil {
		t.Errorf("render=text: %v", got)
	}
	ns, ver, jobs := strings.Index(text, "namespace:"), strings.Index(text, "version:"), strings.Index(text, "jobs:")
	if ns < 0 || ver < 0 || jobs < 0 || ns >= ver || ver >= jobs {
		t.Errorf("key order in the text: want namespace, version, jobs:\n%s", text)
	}
	if strings.HasPrefix(strings.TrimSpace(text), "{") {
		t.Errorf("the text is not YAML:\n%s", text)
	}
	// It parses back to the same definition.
	again := e.saveSpec(other, map[string]any{"text": text, "format": "yaml"})
	if again["headCommitSha"] != sha {
		t.Errorf("the rendered text saves as %v, want %s:\n%s", again["headCommitSha"], sha, text)
	}
	// An older version renders too.
	if v := e.do("GET", "/api/v1/pipelines/"+pid+"/spec?version=1&render=text", nil).must(t, 200).detail(); v["text"] != text {
		t.Errorf("version 1 rendered: %v", v["text"])
	}

	e.do("GET", "/api/v1/pipelines/"+pid+"/spec?render=xml", nil).mustErr(t, 400, "query parameter render")
}

// TestSpecTextKeptAsWritten: a definition saved as text comes back as written,
// comments and layout included; a change of comments alone is a new version
// with the same headCommitSha (which hashes the parsed definition).
func TestSpecTextKeptAsWritten(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("as-written", nil)
	text := "\n# built on every push\nnamespace: demo.kept\nversion: v1\njobs:\n  - name: build   # the only job\n    steps:\n      - run: echo hi\n"
	first := e.saveSpec(pid, map[string]any{"text": text, "format": "yaml"})
	got := e.do("GET", "/api/v1/pipelines/"+pid+"/spec?render=text", nil).must(t, 200).detail()
	if got["text"] != text {
		t.Fatalf("render=text: %q, want the text as written %q", got["text"], text)
	}
	edited := strings.Replace(text, "# the only job", "# still the only job", 1)
	second := e.saveSpec(pid, map[string]any{"text": edited, "format": "yaml", "expectedHeadCommitSha": first["headCommitSha"]})
	if second["headCommitSha"] != first["headCommitSha"] || second["version"] != float64(2) {
		t.Fatalf("comment-only save: %v after %v", second, first)
	}
	if got := e.do("GET", "/api/v1/pipelines/"+pid+"/spec?render=text", nil).must(t, 200).detail(); got["text"] != edited {
		t.Fatalf("after the comment change: %q", got["text"])
	}
	if got := e.do("GET", "/api/v1/pipelines/"+pid+"/spec?version=1&render=text", nil).must(t, 200).detail(); got["text"] != text {
		t.Fatalf("version 1: %q", got["text"])
	}
}

// TestExport: the definition downloads as a YAML file, as written when it
// was saved as YAML text, rendered as YAML otherwise.
func TestExport(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("web site", nil)
	e.do("GET", "/api/v1/pipelines/"+pid+"/export", nil).mustErr(t, 404, "")
	e.saveSpec(pid, map[string]any{"text": goodSpecText, "format": "yaml"})
	r := e.do("GET", "/api/v1/pipelines/"+pid+"/export", nil).must(t, 200)
	if string(r.body) != goodSpecText || !strings.HasPrefix(r.header.Get("Content-Type"), "application/yaml") ||
		r.header.Get("Content-Disposition") != `attachment; filename=web-site.yaml` {
		t.Fatalf("export of a YAML text: %s %q\n%s", r.header.Get("Content-Type"), r.header.Get("Content-Disposition"), r.body)
	}
	e.saveSpec(pid, map[string]any{"spec": goodSpec, "format": "json"})
	r = e.do("GET", "/api/v1/pipelines/"+pid+"/export", nil).must(t, 200)
	if !strings.Contains(string(r.body), "namespace: demo.pipeline") || strings.Contains(string(r.body), "{") {
		t.Fatalf("export of a JSON spec is not YAML:\n%s", r.body)
	}
}

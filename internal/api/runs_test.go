package api

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

func TestTrigger(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("build", map[string]any{"spec": goodSpec})

	body := map[string]any{"variables": map[string]any{"env": "prod"}, "triggeredBy": "user_xxx", "requestId": "trigger-001"}
	first := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", body).must(t, 200).detail()
	if !strings.HasPrefix(first["runId"].(string), "run_") || first["number"] != 1.0 || first["status"] == "" || first["replayed"] != false || first["pipelineId"] != pid {
		t.Fatalf("trigger: %v", first)
	}
	calls := e.runs.Calls()
	if len(calls) != 1 || calls[0] != "trigger "+pid+" by=user_xxx req=trigger-001 type=manual vars=map[env:prod]" {
		t.Errorf("RunControl got %v", calls)
	}
	again := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", body).must(t, 200).detail()
	if again["runId"] != first["runId"] || again["number"] != 1.0 || again["replayed"] != true {
		t.Errorf("replayed trigger: %v, want run %v", again, first["runId"])
	}
	// An empty body is a trigger with defaults; a new run each time.
	second := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()
	third := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", rawBody("")).must(t, 200).detail()
	if second["number"] != 2.0 || third["number"] != 3.0 {
		t.Errorf("numbers %v %v, want 2 and 3", second["number"], third["number"])
	}

	nospec := e.createPipeline("empty", nil)
	e.do("POST", "/api/v1/pipelines/"+nospec+"/trigger", nil).mustErr(t, 409, "has no saved definition to run")
	e.do("POST", "/api/v1/pipelines/pl_cccccccccccccccccccc/trigger", nil).mustErr(t, 404, "pipeline pl_cccccccccccccccccccc not found")
	e.do("POST", "/api/v1/pipelines/../trigger", nil).must(t, 400)

	bad := []struct {
		body any
		msg  string
	}{
		{map[string]any{"variables": map[string]any{"env": 1}}, "body.variables.env: must be a string, got number"},
		{map[string]any{"variables": []any{"env"}}, "body.variables: must be an object of string values, got array"},
		{map[string]any{"variabels": map[string]any{}}, `(did you mean "variables"?)`},
		{map[string]any{"requestId": "a/b"}, "body.requestId"},
		{map[string]any{"requestId": 7}, "body.requestId: must be a string, got number"},
		{map[string]any{"triggeredBy": "x\ny"}, "body.triggeredBy: control character"},
		{rawBody(`{"variables":`), "body: malformed JSON"},
	}
	for _, b := range bad {
		e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", b.body).mustErr(t, 400, b.msg)
	}

	// RunControl's ErrInvalid (bad variables) is a 400 with its message.
	e.runs.triggerErr = fmt.Errorf("variable %q: must be one of dev, prod: %w", "env", store.ErrInvalid)
	e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", map[string]any{"variables": map[string]any{"env": "qa"}}).
		mustErr(t, 400, `variable "env": must be one of dev, prod`)
	e.runs.triggerErr = nil
}

func TestRunDetail(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("build", map[string]any{"spec": goodSpec})
	trig := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", map[string]any{"variables": map[string]any{"env": "prod"}, "requestId": "r-1"}).must(t, 200).detail()
	rid := trig["runId"].(string)

	d := e.do("GET", "/api/v1/pipelines/runs/"+rid, nil).must(t, 200).detail()
	if d["runId"] != rid || d["pipelineId"] != pid || d["number"] != 1.0 || d["status"] != "running" || d["triggerType"] != "manual" ||
		d["triggeredBy"] != "user_alice" || d["requestId"] != "r-1" || d["specVersion"] != 1.0 || d["startedAt"] != "2026-03-02T10:00:00.000Z" || d["endedAt"] != nil {
		t.Errorf("run fields: %v", d)
	}
	if d["variables"].(map[string]any)["env"] != "prod" {
		t.Errorf("variables: %v", d["variables"])
	}
	stages := d["stages"].([]any)
	if len(stages) != 2 {
		t.Fatalf("stages: %v", stages)
	}
	build, deploy := stages[0].(map[string]any), stages[1].(map[string]any)
	if build["name"] != "build" || deploy["name"] != "deploy" || build["index"] != 0.0 || deploy["index"] != 1.0 {
		t.Errorf("stage order: %v, %v", build["name"], deploy["name"])
	}
	jobs := build["jobs"].([]any)
	if len(jobs) != 2 || jobs[0].(map[string]any)["key"] != "build/compile" || jobs[1].(map[string]any)["key"] != "build/lint" {
		t.Fatalf("build jobs: %v", jobs)
	}
	compile := jobs[0].(map[string]any)
	if compile["status"] != "success" || compile["attempt"] != 1.0 || !strings.HasPrefix(compile["jobRunId"].(string), "jr_") {
		t.Errorf("job: %v", compile)
	}
	if lint := jobs[1].(map[string]any); lint["agentId"] != "agent-1" || lint["endedAt"] != nil {
		t.Errorf("lint job: %v", lint)
	}
	steps := compile["steps"].([]any)
	checkout, buildStep := steps[0].(map[string]any), steps[1].(map[string]any)
	if checkout["name"] != "checkout" || checkout["uses"] != "actions/git-checkout@v1" || checkout["exitCode"] != 0.0 || checkout["status"] != "success" {
		t.Errorf("checkout step: %v", checkout)
	}
	if _, has := checkout["run"]; has {
		t.Errorf("uses step carries run: %v", checkout)
	}
	if buildStep["run"] != "go build ./..." || !strings.HasPrefix(buildStep["stepRunId"].(string), "sr_") {
		t.Errorf("run step: %v", buildStep)
	}
	ship := deploy["jobs"].([]any)[0].(map[string]any)["steps"].([]any)[0].(map[string]any)
	if ship["exitCode"] != nil || ship["startedAt"] != nil || ship["status"] != "pending" {
		t.Errorf("pending step: %v", ship)
	}
	tl := d["timeline"].([]any)
	if len(tl) == 0 || tl[0].(map[string]any)["action"] != "triggered" {
		t.Errorf("timeline: %v, want it to start with triggered", tl)
	}

	e.do("GET", "/api/v1/pipelines/runs/run_dddddddddddddddddddd", nil).mustErr(t, 404, "run run_dddddddddddddddddddd not found")
	e.do("GET", "/api/v1/pipelines/runs/"+pid, nil).mustErr(t, 400, "path parameter runId")
	e.do("GET", "/api/v1/pipelines/runs/spec", nil).mustErr(t, 400, "path parameter runId")
	e.do("GET", "/api/v1/pipelines/runs/runs", nil).mustErr(t, 400, "path parameter runId")
	e.do("GET", "/api/v1/pipelines/runs/run_aaaaaaaaaa%2Fbbbbbbbbbb", nil).mustErr(t, 400, `path parameter runId: "run_aaaaaaaaaa/bbbbbbbbbb" is not a run id`)
	e.do("GET", "/api/v1/pipelines/"+pid+"%2Fx/spec", nil).mustErr(t, 400, "path parameter pipelineId")
}

// TestRunProjectAndDefinition: runs, listed and in detail, carry their
// pipeline's projectId and the triggering user's triggerUserId (seed 001's
// executions); with ?include=definition the detail of a run planned from a
// stored version adds that version's text (as written, else rendered).
func TestRunProjectAndDefinition(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("build", map[string]any{"spec": goodSpec})
	first := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string)
	e.saveSpec(pid, map[string]any{"text": goodSpecText, "format": "yaml"})
	second := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string)
	alice := e.userID("user_alice")

	items := e.do("GET", "/api/v1/pipelines/"+pid+"/runs", nil).must(t, 200).detail()["items"].([]any)
	for _, it := range items {
		if run := it.(map[string]any); run["projectId"] != "proj_demo" || run["triggerUserId"] != alice {
			t.Errorf("listed run: projectId %v, triggerUserId %v; want proj_demo, %s", run["projectId"], run["triggerUserId"], alice)
		}
	}

	d := e.do("GET", "/api/v1/pipelines/runs/"+first, nil).must(t, 200).detail()
	if d["projectId"] != "proj_demo" || d["triggerUserId"] != alice {
		t.Errorf("run detail: projectId %v, triggerUserId %v", d["projectId"], d["triggerUserId"])
	}
	def := d["definition"].(map[string]any)
	if def["source"] != "store" || def["specVersion"] != 1.0 || def["content"] != nil || def["format"] != nil {
		t.Errorf("definition without include: %v", def)
	}
	// Version 1 was saved as an object: its text is the stored spec rendered.
	def = e.do("GET", "/api/v1/pipelines/runs/"+first+"?include=definition", nil).must(t, 200).detail()["definition"].(map[string]any)
	content, _ := def["content"].(string)
	if def["source"] != "store" || def["specVersion"] != 1.0 || def["format"] != "yaml" ||
		!strings.Contains(content, "namespace: demo.pipeline\n") || !strings.Contains(content, "uses: actions/go-build@v1\n") {
		t.Errorf("definition of version 1: %v", def)
	}
	// Version 2 was saved as text: the text as written, comments included.
	def = e.do("GET", "/api/v1/pipelines/runs/"+second+"?include=definition", nil).must(t, 200).detail()["definition"].(map[string]any)
	if def["specVersion"] != 2.0 || def["format"] != "yaml" || def["content"] != goodSpecText {
		t.Errorf("definition of version 2: %v", def)
	}

	e.do("GET", "/api/v1/pipelines/runs/"+first+"?include=stages", nil).mustErr(t, 400, `query parameter include: must be one of definition; got "stages"`)
	e.do("GET", "/api/v1/pipelines/runs/"+first+"?includes=definition", nil).mustErr(t, 400, `unknown parameter "includes" (did you mean "include"?)`)
}

func TestRunControl(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("build", map[string]any{"spec": goodSpec})
	other := e.createPipeline("other", map[string]any{"spec": goodSpec})
	rid := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string)
	base := "/api/v1/pipelines/" + pid + "/runs/" + rid

	e.clock.Advance(time.Minute)
	paused := e.do("POST", base+"/pause", map[string]any{"reason": "manual operation", "operator": "user_ops"}).must(t, 200).detail()
	if paused["status"] != "paused" || paused["stages"] == nil {
		t.Errorf("pause: %v", paused)
	}
	e.do("POST", base+"/pause", nil).mustErr(t, 409, "run "+rid+" is paused")
	resumed := e.do("POST", base+"/resume", map[string]any{"reason": "go on"}).must(t, 200).detail()
	if resumed["status"] != "running" {
		t.Errorf("resume: %v", resumed)
	}
	e.do("POST", base+"/resume", nil).mustErr(t, 409, "is running")
	stopped := e.do("POST", base+"/stop", rawBody(`{"reason":"enough"}`)).must(t, 200).detail()
	if stopped["status"] != "cancelled" || stopped["endedAt"] == nil {
		t.Errorf("stop: %v", stopped)
	}
	e.do("POST", base+"/stop", nil).mustErr(t, 409, "run "+rid+" is cancelled")

	// The timeline says who did what, when, why.
	tl := stopped["timeline"].([]any)
	var got []string
	for _, x := range tl {
		m := x.(map[string]any)
		got = append(got, fmt.Sprintf("%s/%s/%s", m["action"], m["operator"], m["reason"]))
	}
	want := []string{"paused/user_ops/manual operation", "resumed/user_alice/go on", "stop/user_alice/enough"}
	joined := strings.Join(got, " ")
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("timeline %v lacks %s", got, w)
		}
	}
	if tl[1].(map[string]any)["time"] != "2026-03-02T10:01:00.000Z" {
		t.Errorf("timeline time: %v", tl[1])
	}

	// A run under another pipeline's path is not found, and RunControl is
	// not called.
	before := len(e.runs.Calls())
	e.do("POST", "/api/v1/pipelines/"+other+"/runs/"+rid+"/stop", nil).mustErr(t, 404, "run "+rid+" not found in pipeline "+other)
	e.do("POST", "/api/v1/pipelines/"+pid+"/runs/run_eeeeeeeeeeeeeeeeeeee/pause", nil).mustErr(t, 404, "not found")
	if len(e.runs.Calls()) != before {
		t.Errorf("RunControl called for a foreign or missing run: %v", e.runs.Calls()[before:])
	}
	e.do("POST", base+"/stop", map[string]any{"reason": 5}).mustErr(t, 400, "body.reason: must be a string")
	e.do("POST", base+"/stop", map[string]any{"reson": "x"}).mustErr(t, 400, `(did you mean "reason"?)`)
	e.do("POST", base+"/stop", map[string]any{"reason": strings.Repeat("r", 1001)}).mustErr(t, 400, "body.reason: at most 1000 characters")
	e.do("POST", base+"/stop?force=1", nil).mustErr(t, 400, `query: unknown parameter "force"; none are accepted here`)
	e.do("POST", base+"/restart", nil).mustErr(t, 404, "no route for POST")
	e.do("GET", base+"/stop", nil).mustErr(t, 405, "method GET is not allowed")
}

func TestListRuns(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("build", map[string]any{"spec": goodSpec})
	var ids []string
	for range 7 {
		ids = append(ids, e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string))
		e.clock.Advance(time.Second)
	}
	for _, id := range ids[:2] {
		e.do("POST", "/api/v1/pipelines/"+pid+"/runs/"+id+"/stop", nil).must(t, 200)
	}
	l := e.do("GET", "/api/v1/pipelines/"+pid+"/runs?pageSize=3", nil).must(t, 200).detail()
	items := l["items"].([]any)
	if l["total"] != 7.0 || len(items) != 3 || items[0].(map[string]any)["number"] != 7.0 || items[2].(map[string]any)["number"] != 5.0 {
		t.Errorf("newest first: total %v, %v", l["total"], items)
	}
	if _, has := items[0].(map[string]any)["stages"]; has {
		t.Error("list items carry the tree")
	}
	l = e.do("GET", "/api/v1/pipelines/"+pid+"/runs?pageSize=3&page=3", nil).must(t, 200).detail()
	if len(l["items"].([]any)) != 1 {
		t.Errorf("last page: %v", l["items"])
	}
	l = e.do("GET", "/api/v1/pipelines/"+pid+"/runs?status=cancelled", nil).must(t, 200).detail()
	if l["total"] != 2.0 {
		t.Errorf("status=cancelled: total %v", l["total"])
	}
	e.do("GET", "/api/v1/pipelines/"+pid+"/runs?status=done", nil).mustErr(t, 400, `query parameter status: must be one of pending, running, success, failed, cancelled, paused, partial; got "done"`)
	e.do("GET", "/api/v1/pipelines/"+pid+"/runs?pageSize=101", nil).mustErr(t, 400, "query parameter pageSize")
	e.do("GET", "/api/v1/pipelines/"+pid+"/runs?state=x", nil).mustErr(t, 400, `unknown parameter "state"`)
	e.do("GET", "/api/v1/pipelines/pl_ffffffffffffffffffff/runs", nil).mustErr(t, 404, "not found")
}

func TestStepLogs(t *testing.T) {
	e := newEnv(t)
	pid := e.createPipeline("build", map[string]any{"spec": goodSpec})
	rid := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string)
	other := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string)
	tree, err := e.st.GetRunTree(context.Background(), rid)
	if err != nil {
		t.Fatal(err)
	}
	sid := tree.Steps[tree.Jobs[0].ID][1].ID
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var lines []store.LogLine
	for i := range 30 {
		lines = append(lines, store.LogLine{Time: t0.Add(time.Duration(i) * 500 * time.Millisecond), Level: "info", Message: fmt.Sprintf("line %02d", i)})
	}
	if _, err := e.st.AppendLogs(context.Background(), sid, lines, 1<<20); err != nil {
		t.Fatal(err)
	}
	base := "/api/v1/pipelines/runs/" + rid + "/steps/" + sid + "/logs"

	all := e.do("GET", base, nil).must(t, 200)
	items := all.env["detail"].([]any)
	if len(items) != 30 {
		t.Fatalf("%d lines, want 30", len(items))
	}
	l0 := items[0].(map[string]any)
	if l0["message"] != "line 00" || l0["level"] != "info" || l0["time"] != "2026-03-02T10:00:00.000Z" || l0["seq"] == nil {
		t.Errorf("line: %v", l0)
	}
	page := e.do("GET", base+"?offset=5&limit=3", nil).must(t, 200).env["detail"].([]any)
	if len(page) != 3 || page[0].(map[string]any)["message"] != "line 05" {
		t.Errorf("offset/limit: %v", page)
	}
	// Seconds 10:00:02 to 10:00:03 hold lines 4 to 7 (two per second).
	win := e.do("GET", fmt.Sprintf("%s?startTime=%d&endTime=%d", base, t0.Unix()+2, t0.Unix()+3), nil).must(t, 200).env["detail"].([]any)
	if len(win) != 4 || win[0].(map[string]any)["message"] != "line 04" || win[3].(map[string]any)["message"] != "line 07" {
		t.Errorf("time window: %v", win)
	}

	text := e.do("GET", base+"?format=text", nil).must(t, 200)
	if ct := text.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	got := strings.Split(strings.TrimSuffix(string(text.body), "\n"), "\n")
	if len(got) != 30 || got[0] != "line 00" || got[29] != "line 29" {
		t.Errorf("text download: %q", text.body)
	}
	short := e.do("GET", base+"?format=text&limit=2&offset=1", nil).must(t, 200)
	if string(short.body) != "line 01\nline 02\n" {
		t.Errorf("text with limit: %q", short.body)
	}

	bad := []struct {
		q      string
		status int
		msg    string
	}{
		{"?startTime=abc", 400, `query parameter startTime: must be an integer between 0 and 253402300799, got "abc"`},
		{"?endTime=-5", 400, "query parameter endTime"},
		{"?startTime=100&endTime=50", 400, "query parameter endTime: 50 is before startTime 100"},
		{"?limit=0", 400, "query parameter limit: must be an integer between 1 and 10000"},
		{"?limit=10001", 400, "query parameter limit"},
		{"?offset=-1", 400, "query parameter offset"},
		{"?format=html", 400, `query parameter format: must be one of json, text; got "html"`},
		{"?start_time=1", 400, `unknown parameter "start_time" (did you mean "startTime"?)`},
	}
	for _, b := range bad {
		e.do("GET", base+b.q, nil).mustErr(t, b.status, b.msg)
	}
	// The step must belong to the run.
	e.do("GET", "/api/v1/pipelines/runs/"+other+"/steps/"+sid+"/logs", nil).mustErr(t, 404, "step run "+sid+" not found in run "+other)
	e.do("GET", "/api/v1/pipelines/runs/run_gggggggggggggggggggg/steps/"+sid+"/logs", nil).mustErr(t, 404, "run run_gggggggggggggggggggg not found")
	e.do("GET", "/api/v1/pipelines/runs/"+rid+"/steps/..%2F..%2Fetc/logs", nil).must(t, 400)
	e.do("GET", "/api/v1/pipelines/runs/"+rid+"/steps/jr_aaaaaaaaaaaaaaaaaaaa/logs", nil).mustErr(t, 400, "path parameter stepRunId")
}

// TestStepLogsTextCap: a log trimmed at the cap keeps its latest section,
// and the text download returns all of it, newest line included, after the
// store's marker saying what was dropped (seed 001). It used to count the
// marker and the line breaks against the cap and stop before the newest
// lines.
func TestStepLogsTextCap(t *testing.T) {
	const logCap = 64
	e := newEnvWith(t, func(c *Config) { c.LogCapBytes = logCap })
	pid := e.createPipeline("build", map[string]any{"spec": goodSpec})
	rid := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string)
	tree, _ := e.st.GetRunTree(context.Background(), rid)
	sid := tree.Steps[tree.Jobs[0].ID][0].ID
	// As the log ingestion does: batches appended under the same cap.
	for i := range 20 {
		line := store.LogLine{Time: e.clock.Now(), Level: "info", Message: fmt.Sprintf("line %02d", i)}
		if _, err := e.st.AppendLogs(context.Background(), sid, []store.LogLine{line}, logCap); err != nil {
			t.Fatal(err)
		}
	}
	r := e.do("GET", "/api/v1/pipelines/runs/"+rid+"/steps/"+sid+"/logs?format=text", nil).must(t, 200)
	// 9 lines of 7 bytes fit in 64: lines 11 to 19 are kept.
	want := "[runnel: 77 bytes in 11 earlier lines were dropped: the log is limited to 64 bytes]\n"
	for i := 11; i < 20; i++ {
		want += fmt.Sprintf("line %02d\n", i)
	}
	if string(r.body) != want {
		t.Errorf("download of a trimmed log:\n got %q\nwant %q", r.body, want)
	}
	// The JSON lines agree.
	lines := e.do("GET", "/api/v1/pipelines/runs/"+rid+"/steps/"+sid+"/logs", nil).must(t, 200).env["detail"].([]any)
	if len(lines) != 10 || lines[9].(map[string]any)["message"] != "line 19" {
		t.Errorf("JSON lines: %v", lines)
	}
}

// TestStepLogsTextOverCap: a log stored under a larger cap than the server's
// now (the cap was lowered) is downloaded as its newest section within the
// cap, with a line at the top saying how much was left out.
func TestStepLogsTextOverCap(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.LogCapBytes = 64 })
	pid := e.createPipeline("build", map[string]any{"spec": goodSpec})
	rid := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string)
	tree, _ := e.st.GetRunTree(context.Background(), rid)
	steps := tree.Steps[tree.Jobs[0].ID]
	var lines []store.LogLine
	for i := range 20 {
		lines = append(lines, store.LogLine{Time: e.clock.Now(), Level: "info", Message: fmt.Sprintf("line %02d", i)})
	}
	// Stored whole (140 bytes), and stored trimmed at 100 bytes (its marker first).
	for k, stored := range []int64{1 << 20, 100} {
		sid := steps[k].ID
		if _, err := e.st.AppendLogs(context.Background(), sid, lines, stored); err != nil {
			t.Fatal(err)
		}
		r := e.do("GET", "/api/v1/pipelines/runs/"+rid+"/steps/"+sid+"/logs?format=text", nil).must(t, 200)
		want := ""
		if stored == 100 {
			want = "[runnel: 42 bytes in 6 earlier lines were dropped: the log is limited to 100 bytes]\n" +
				"[runnel: 5 earlier lines (35 bytes) left out: a download is limited to the 64 bytes log cap]\n"
		} else {
			want = "[runnel: 11 earlier lines (77 bytes) left out: a download is limited to the 64 bytes log cap]\n"
		}
		for i := 11; i < 20; i++ {
			want += fmt.Sprintf("line %02d\n", i)
		}
		if string(r.body) != want {
			t.Errorf("stored under a %d-byte cap:\n got %q\nwant %q", stored, r.body, want)
		}
	}
	// A page asked for is a page: its newest lines within the cap.
	r := e.do("GET", "/api/v1/pipelines/runs/"+rid+"/steps/"+steps[0].ID+"/logs?format=text&offset=2&limit=3", nil).must(t, 200)
	if string(r.body) != "line 02\nline 03\nline 04\n" {
		t.Errorf("page: %q", r.body)
	}
	// A newest line longer than the cap alone is left out too, and said so.
	rid2 := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string)
	tree2, _ := e.st.GetRunTree(context.Background(), rid2)
	long := tree2.Steps[tree2.Jobs[0].ID][0].ID
	if _, err := e.st.AppendLogs(context.Background(), long, []store.LogLine{{Time: e.clock.Now(), Level: "info", Message: strings.Repeat("x", 100)}}, 1<<20); err != nil {
		t.Fatal(err)
	}
	r = e.do("GET", "/api/v1/pipelines/runs/"+rid2+"/steps/"+long+"/logs?format=text", nil).must(t, 200)
	if want := "[runnel: all 1 line (100 bytes) left out: the newest alone is over the 64 bytes log cap]\n"; string(r.body) != want {
		t.Errorf("a line over the cap:\n got %q\nwant %q", r.body, want)
	}
}

// TestHealth: /healthz always answers; /readyz follows the database, and a
// database outage is a 5xx, never a 404 or 401.
func TestHealth(t *testing.T) {
	e := newEnv(t)
	h := e.do("GET", "/healthz", nil).must(t, 200)
	if h.detail()["status"] != "ok" {
		t.Errorf("healthz: %s", h.body)
	}
	e.do("GET", "/readyz", nil).must(t, 200)
	pid := e.createPipeline("x", nil)

	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	e.do("GET", "/healthz", nil).must(t, 200)
	e.do("GET", "/readyz", nil).mustErr(t, 503, "not ready: the database is unreachable")
	e.allow500 = true
	r := e.do("GET", "/api/v1/pipelines/"+pid, nil)
	if r.status != 500 || !strings.Contains(r.errMsg(), "internal error (request id ") {
		t.Errorf("database down: status %d %s, want 500 with a request id", r.status, r.body)
	}
	if strings.Contains(r.errMsg(), "sql") || strings.Contains(r.errMsg(), "closed") {
		t.Errorf("500 leaks the cause: %s", r.errMsg())
	}
	logMu.Lock()
	logged := e.logs.String()
	logMu.Unlock()
	if !strings.Contains(logged, "request failed") || !strings.Contains(logged, r.header.Get("X-Request-Id")) {
		t.Errorf("the cause is not logged with the request id:\n%s", logged)
	}
}

func TestUnknownRoutes(t *testing.T) {
	e := newEnv(t)
	e.do("GET", "/api/v1/nothing", nil).mustErr(t, 404, "no route for GET /api/v1/nothing")
	e.do("GET", "/", nil).mustErr(t, 404, "no route")
	e.do("PATCH", "/api/v1/pipelines", nil).mustErr(t, 405, "method PATCH is not allowed on /api/v1/pipelines; allowed: ")
	e.do("GET", "/api/v1/pipelines/pl_aaaaaaaaaaaaaaaaaaaa/other", nil).mustErr(t, 404, "no route")
	r := e.do("DELETE", "/healthz", nil).must(t, 405)
	if r.header.Get("Allow") == "" {
		t.Error("405 without Allow")
	}
}

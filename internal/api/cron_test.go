package api

import (
	"net/http"
	"testing"
	"time"
)

// cronRuns is recordingRuns on a server whose cron minimum interval is min.
type cronRuns struct {
	*recordingRuns
	min time.Duration
}

func (c cronRuns) CronMinInterval() time.Duration { return c.min }

func newCronEnv(t *testing.T, min time.Duration) *env {
	return newEnvWith(t, func(c *Config) { c.Runs = cronRuns{c.Runs.(*recordingRuns), min} })
}

// berlinSpec has a cron trigger at 02:30 in Berlin.
func berlinSpec(cron string) map[string]any {
	s := specWithStep("true")
	s["triggers"] = []any{map[string]any{"type": "manual"}, map[string]any{"type": "cron", "cron": cron, "timezone": "Europe/Berlin"}}
	return s
}

// TestPipelineCronFields: the seed's flat fields are stored, shown on get,
// list and update, and nextStart is the next tick over the flat fields and
// the head definition's cron triggers (the test clock is 2026-03-02T10:00Z).
func TestPipelineCronFields(t *testing.T) {
	e := newEnv(t)
	// The seed's body spells the zone triggerCronTimezone once.
	p := e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "proj_demo", "name": "nightly",
		"triggerCronExpression": "* 4 * * *", "triggerCronTimezone": "Asia/Hong_Kong"}).must(t, http.StatusCreated).detail()
	pid := p["pipelineId"].(string)
	if p["triggerCronExpression"] != "* 4 * * *" || p["triggerTimezone"] != "Asia/Hong_Kong" {
		t.Fatalf("created: %v", p)
	}
	if _, ok := p["triggerCronTimezone"]; ok {
		t.Errorf("the answer repeats the input-only name triggerCronTimezone: %v", p)
	}
	// 04:00 in Hong Kong is 20:00 UTC.
	if p["nextStart"] != "2026-03-02T20:00:00.000Z" {
		t.Errorf("nextStart = %v, want 2026-03-02T20:00:00.000Z", p["nextStart"])
	}
	got := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()
	if got["triggerTimezone"] != "Asia/Hong_Kong" || got["nextStart"] != "2026-03-02T20:00:00.000Z" {
		t.Errorf("get: %v", got)
	}
	list := e.do("GET", "/api/v1/pipelines?projectId=proj_demo", nil).must(t, 200).detail()
	item := list["items"].([]any)[0].(map[string]any)
	if item["triggerCronExpression"] != "* 4 * * *" || item["nextStart"] != "2026-03-02T20:00:00.000Z" {
		t.Errorf("list item: %v", item)
	}

	// A cron trigger in the head definition counts too: 02:30 CET is 01:30 UTC.
	e.saveSpec(pid, map[string]any{"spec": berlinSpec("30 2 * * *")})
	upd := e.do("PUT", "/api/v1/pipelines/"+pid, map[string]any{"triggerCronExpression": ""}).must(t, 200).detail()
	if upd["triggerCronExpression"] != "" || upd["triggerTimezone"] != "Asia/Hong_Kong" || upd["nextStart"] != "2026-03-03T01:30:00.000Z" {
		t.Errorf("after clearing the expression: %v", upd)
	}
	upd = e.do("PUT", "/api/v1/pipelines/"+pid, map[string]any{"triggerCronExpression": "0 9 * * *", "triggerTimezone": ""}).must(t, 200).detail()
	if upd["triggerTimezone"] != "" || upd["nextStart"] != "2026-03-03T01:30:00.000Z" {
		t.Errorf("09:00 UTC is past today; the Berlin trigger comes first: %v", upd)
	}

	// No schedule: null.
	plain := e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "proj_demo", "name": "plain"}).must(t, http.StatusCreated).detail()
	if v, ok := plain["nextStart"]; !ok || v != nil || plain["triggerCronExpression"] != "" || plain["triggerTimezone"] != "" {
		t.Errorf("a pipeline without a schedule: %v", plain)
	}
}

func TestPipelineCronErrors(t *testing.T) {
	e := newCronEnv(t, 5*time.Minute)
	pid := e.createPipeline("p", nil)
	cases := []struct {
		name      string
		body      map[string]any
		fragments []string
	}{
		{"bad expression", map[string]any{"triggerCronExpression": "61 * * * *"},
			[]string{"body.triggerCronExpression", `invalid cron expression "61 * * * *"`, "5 fields", "@daily"}},
		{"bad zone", map[string]any{"triggerCronExpression": "0 4 * * *", "triggerTimezone": "Mars/Olympus"},
			[]string{"body.triggerTimezone", `unknown time zone "Mars/Olympus"`, "IANA name"}},
		{"local zone", map[string]any{"triggerTimezone": "Local"}, []string{"body.triggerTimezone", "unknown time zone"}},
		{"two zones", map[string]any{"triggerTimezone": "UTC", "triggerCronTimezone": "Asia/Hong_Kong"},
			[]string{"body.triggerCronTimezone", "another name of body.triggerTimezone"}},
		{"too often", map[string]any{"triggerCronExpression": "*/2 * * * *"},
			[]string{"body.triggerCronExpression", "has ticks 2m0s apart", "minimum interval between runs is 5m0s"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.do("PUT", "/api/v1/pipelines/"+pid, c.body).mustErr(t, http.StatusBadRequest, c.fragments...)
			body := map[string]any{"projectId": "proj_demo", "name": "new-" + c.name[:3]}
			for k, v := range c.body {
				body[k] = v
			}
			e.do("POST", "/api/v1/pipelines", body).mustErr(t, http.StatusBadRequest, c.fragments...)
		})
	}
	// Nothing was stored by the refused requests.
	got := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200).detail()
	if got["triggerCronExpression"] != "" || got["triggerTimezone"] != "" {
		t.Errorf("a refused update changed the pipeline: %v", got)
	}
	e.do("PUT", "/api/v1/pipelines/"+pid, map[string]any{"triggerCronExpression": "*/5 * * * *"}).must(t, 200)
}

// TestSpecCronMinInterval: a definition whose cron trigger ticks more often
// than the server allows is refused on save and reported by validate, with
// the trigger's path.
func TestSpecCronMinInterval(t *testing.T) {
	e := newCronEnv(t, 5*time.Minute)
	pid := e.createPipeline("p", nil)
	e.do("POST", "/api/v1/pipelines/"+pid+"/spec/save", map[string]any{"spec": berlinSpec("* * * * *")}).
		mustErr(t, http.StatusBadRequest, "triggers[1].cron", "minimum interval between runs is 5m0s")
	v := e.do("POST", "/api/v1/pipelines/"+pid+"/spec/validate", map[string]any{"spec": berlinSpec("* * * * *")}).must(t, 200).detail()
	errs, _ := v["errors"].([]any)
	if v["valid"] != false || len(errs) != 1 || errs[0].(map[string]any)["path"] != "triggers[1].cron" {
		t.Errorf("validate: %v", v)
	}
	e.saveSpec(pid, map[string]any{"spec": berlinSpec("*/5 * * * *")})

	// At the default minimum (1m), every minute is allowed.
	d := newEnv(t)
	dp := d.createPipeline("p", map[string]any{"triggerCronExpression": "* * * * *"})
	d.saveSpec(dp, map[string]any{"spec": berlinSpec("* * * * *")})
	d.do("POST", "/api/v1/pipelines/"+dp+"/spec/save", map[string]any{"spec": berlinSpec("@every 30s")}).
		mustErr(t, http.StatusBadRequest, "triggers[1].cron", "minimum interval between runs is 1m0s")
}

package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestAuditLog: every successful change through the API is in the audit
// log with who, what and where, newest first; reads, failures and a run's
// trigger are not; only admins read it, with filters.
func TestAuditLog(t *testing.T) {
	e := newEnv(t)
	admin := withToken(e.addToken("root", "admin_root", "admin", nil))
	u := e.do("POST", "/api/v1/users", map[string]any{"login": "alice"}, admin).must(t, http.StatusCreated).detail()
	tok := e.do("POST", "/api/v1/users/"+u["userId"].(string)+"/tokens", map[string]any{"name": "t"}, admin).must(t, http.StatusCreated).detail()
	alice := withToken(tok["token"].(string))

	pid := e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "p", "name": "audited",
		"spec": map[string]any{"namespace": "p", "jobs": []any{map[string]any{"name": "a", "steps": []any{map[string]any{"run": "true"}}}}}}, alice).
		must(t, http.StatusCreated).detail()["pipelineId"].(string)
	e.do("GET", "/api/v1/pipelines/"+pid, nil, alice).must(t, http.StatusOK)
	e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "p"}, alice).mustErr(t, http.StatusBadRequest)
	rid := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", map[string]any{}, alice).must(t, http.StatusOK).detail()["runId"].(string)
	// The run records who triggered it: her login and her user id.
	if run := e.do("GET", "/api/v1/pipelines/runs/"+rid, nil, alice).must(t, http.StatusOK).detail(); run["triggeredBy"] != "alice" || run["triggerUserId"] != u["userId"] {
		t.Fatalf("run triggered by alice: triggeredBy %v, triggerUserId %v", run["triggeredBy"], run["triggerUserId"])
	}
	e.do("PUT", "/api/v1/pipelines/"+pid, map[string]any{"description": "changed"}, alice).must(t, http.StatusOK)

	e.do("GET", "/api/v1/audit", nil, alice).mustErr(t, http.StatusForbidden, "admin")
	list := func(query string) []map[string]any {
		t.Helper()
		d := e.do("GET", "/api/v1/audit"+query, nil, admin).must(t, http.StatusOK).detail()
		var out []map[string]any
		for _, it := range d["items"].([]any) {
			out = append(out, it.(map[string]any))
		}
		if int(d["total"].(float64)) < len(out) {
			t.Fatalf("total %v < %d items", d["total"], len(out))
		}
		return out
	}
	all := list("")
	var got []string
	for _, a := range all {
		got = append(got, a["actor"].(string)+" "+a["action"].(string)+" "+a["resource"].(string))
	}
	want := []string{
		"alice PUT /api/v1/pipelines/{pipelineId} /api/v1/pipelines/" + pid,
		"alice POST /api/v1/pipelines /api/v1/pipelines/" + pid,
		"admin_root POST /api/v1/users/{userId}/tokens /api/v1/tokens/" + tok["tokenId"].(string),
		"admin_root POST /api/v1/users /api/v1/users/" + u["userId"].(string),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit log:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	first := all[0]
	if first["actorId"] != u["userId"] || first["status"] != 200.0 || first["remoteAddr"] == "" || first["requestId"] == "" || first["time"] == "" {
		t.Fatalf("entry: %v", first)
	}
	if n := len(list("?actor=alice")); n != 2 {
		t.Fatalf("alice's entries: %d", n)
	}
	if n := len(list("?resource=" + url.QueryEscape("/api/v1/users/"))); n != 1 {
		t.Fatalf("entries under /api/v1/users/: %d", n)
	}
	if n := len(list("?action=" + url.QueryEscape("POST /api/v1/pipelines"))); n != 1 {
		t.Fatalf("pipeline creations: %d", n)
	}
	if n := len(list("?until=2000-01-01T00:00:00Z")); n != 0 {
		t.Fatalf("entries before 2000: %d", n)
	}
	e.do("GET", "/api/v1/audit?since=yesterday", nil, admin).mustErr(t, http.StatusBadRequest, "query parameter since")
	if p := list("?pageSize=1&page=2"); len(p) != 1 || p[0]["action"] != "POST /api/v1/pipelines" {
		t.Fatalf("page 2 of 1: %v", p)
	}
}

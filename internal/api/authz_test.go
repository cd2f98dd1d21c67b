package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/access"
	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/event"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/store"
)

// The callers of the authorization matrix: no token, a member of project
// "web" in each role, the owner of another project, a site admin, an
// agent.
var matrixCallers = []string{"none", "viewer", "developer", "maintainer", "owner", "other", "admin", "agent"}

// reached is the status of the stub handlers: the request got past
// authentication, the scope and the route's access rule.
const reached = 299

// matrixWant says, for each access rule a route may declare, what each
// caller gets: reached, or the refusal. It is written out rather than
// derived from the policy, so that a change of the rules shows here; a
// rule missing from it fails the test.
var matrixWant = map[string]map[string]int{
	// Everyone signed in; the service shows each only their share.
	"signed-in": {"viewer": reached, "developer": reached, "maintainer": reached, "owner": reached, "other": reached, "admin": reached},
	// The service checks the project the body names (see TestAccessBodies).
	"body":  {"viewer": reached, "developer": reached, "maintainer": reached, "owner": reached, "other": reached, "admin": reached},
	"admin": {"viewer": 403, "developer": 403, "maintainer": 403, "owner": 403, "other": 403, "admin": reached},
	// A project's resources: the other project's owner is told nothing
	// exists (404); a member with too small a role is refused (403).
	"viewer":     {"viewer": reached, "developer": reached, "maintainer": reached, "owner": reached, "other": 404, "admin": reached},
	"developer":  {"viewer": 403, "developer": reached, "maintainer": reached, "owner": reached, "other": 404, "admin": reached},
	"maintainer": {"viewer": 403, "developer": 403, "maintainer": reached, "owner": reached, "other": 404, "admin": reached},
	"owner":      {"viewer": 403, "developer": 403, "maintainer": 403, "owner": reached, "other": 404, "admin": reached},
}

// authzFixture is a store with two projects, their members and one of
// each resource of project web.
type authzFixture struct {
	e      *env
	tokens map[string]string // caller → token ("none": "")
	users  map[string]string // caller → user id
	params map[string]string // path parameter → a value naming a resource of web
}

func newAuthzFixture(t *testing.T, tweaks ...func(*Config)) *authzFixture {
	e := newEnvWith(t, func(c *Config) {
		withImages(c)
		for _, tw := range tweaks {
			tw(c)
		}
	})
	ctx := context.Background()
	f := &authzFixture{e: e, tokens: map[string]string{"none": ""}, users: map[string]string{}}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for _, p := range []string{"web", "ops"} {
		must("project "+p, e.st.CreateProject(ctx, &store.Project{ID: p, Name: p}))
	}
	for _, c := range []string{"viewer", "developer", "maintainer", "owner", "other", "admin"} {
		role := "user"
		if c == "admin" {
			role = "admin"
		}
		f.tokens[c] = e.addToken(c, "u_"+c, role, nil)
		u, err := e.st.UserByLogin(ctx, "u_"+c)
		must("user "+c, err)
		f.users[c] = u.ID
		switch c {
		case "other":
			must("member", e.st.SetMember(ctx, &store.Member{ProjectID: "ops", Kind: store.MemberUser, MemberID: u.ID, Role: "owner"}))
		case "admin":
		default:
			must("member", e.st.SetMember(ctx, &store.Member{ProjectID: "web", Kind: store.MemberUser, MemberID: u.ID, Role: c}))
		}
	}
	f.tokens["agent"] = e.addToken("agent", "agent_1", "agent", nil)

	now := e.clock.Now()
	pl := &store.Pipeline{ID: runnel.NewID("pl"), ProjectID: "web", Name: "site", SaveMode: "direct", CreatedAt: now, UpdatedAt: now, Metadata: map[string]any{}}
	must("pipeline", e.st.CreatePipeline(ctx, pl))
	run := &store.Run{ID: runnel.NewID("run"), PipelineID: pl.ID, Status: runnel.RunRunning, TriggerType: runnel.TriggerManual, CreatedAt: now}
	job := &store.JobRun{ID: runnel.NewID("jr"), RunID: run.ID, Key: "build/a", Name: "a", Stage: "build", Status: "pending", Attempt: 1}
	step := &store.StepRun{ID: runnel.NewID("sr"), JobRunID: job.ID, Name: "s", Run: "true", Status: "pending"}
	_, _, err := e.st.CreateRun(ctx, &store.NewRun{Run: run, Jobs: []*store.JobRun{job}, Steps: map[string][]*store.StepRun{job.ID: {step}}})
	must("run", err)
	apr := &store.Approval{ID: runnel.NewID("apr"), RunID: run.ID, Scope: "pipeline", Status: runnel.ApprovalPending, RequestedAt: now}
	must("approval", e.st.UpdateRunTx(ctx, run.ID, func(tx store.RunTx) error { return tx.PutApproval(apr) }))
	sec := &store.Secret{ID: runnel.NewID("sec"), Name: "TOKEN", Scope: "project", ScopeID: "web", Ciphertext: []byte("x"), KeyID: "k", CreatedAt: now, UpdatedAt: now}
	must("secret", e.st.CreateSecret(ctx, sec))
	cred := &store.Credential{ID: runnel.NewID("cred"), Name: "gh", Kind: "github", Host: "github.com", Username: "x", ProjectID: "web",
		Ciphertext: []byte("x"), KeyID: "k", CreatedAt: now, UpdatedAt: now}
	must("credential", e.st.CreateCredential(ctx, cred))

	f.params = map[string]string{
		"projectId": "web", "namespace": "web", "pipelineId": pl.ID, "runId": run.ID, "buildId": run.ID, "build_id": run.ID,
		"approvalId": apr.ID, "secretId": sec.ID, "credentialId": cred.ID, "stepRunId": step.ID,
		// Parameters no rule names: any well-formed value (the stub
		// handlers never look them up).
		"artifactId": runnel.NewID("art"), "agentId": runnel.NewID("agent"), "tokenId": runnel.NewID("tok"),
		"userId": f.users["viewer"], "memberId": f.users["viewer"], "teamId": runnel.NewID("tm"),
		"repo_name": "app", "repoName": "app", "provider": "github", "name": "gitea", "sessionId": runnel.NewID("ses"),
	}
	return f
}

var wildcard = regexp.MustCompile(`\{([A-Za-z_]+)\}`)

// TestAuthorizationMatrix sends every route of the API (the route table
// itself, with stub handlers) as each caller and checks the answer against
// matrixWant for the route's declared rule: a route without a rule, or with
// one the table does not know, fails.
func TestAuthorizationMatrix(t *testing.T) {
	f := newAuthzFixture(t)
	routes := f.e.srv.routes()
	stubbed := make([]apikit.Route, len(routes))
	for i, rt := range routes {
		rt.H = func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(reached)
			return nil
		}
		stubbed[i] = rt
	}
	mux := &apikit.Mux{Routes: stubbed, Authenticate: f.e.srv.authenticate, Authorize: f.e.srv.authorize, Fail: f.e.srv.fail,
		MaxBody: 1 << 20, Log: f.e.srv.log}
	h := mux.Handler()

	checked := 0
	for _, rt := range routes {
		name := rt.Method + " " + rt.Path
		rule, err := access.ParseRule(rt.Access)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if rt.Public != (rule.Kind == "public") {
			t.Errorf("%s: Public is %v but the access rule is %q", name, rt.Public, rt.Access)
			continue
		}
		if rt.Public {
			continue
		}
		key := rule.Kind
		if rule.Kind == "project" {
			key = rule.Role.String()
		}
		want, ok := matrixWant[key]
		if !ok {
			t.Errorf("%s: rule %q has no row in matrixWant", name, rt.Access)
			continue
		}
		path := wildcard.ReplaceAllStringFunc(rt.Path, func(w string) string {
			v, ok := f.params[strings.Trim(w, "{}")]
			if !ok {
				t.Fatalf("%s: no fixture value for path parameter %s", name, w)
			}
			return v
		})
		for _, caller := range matrixCallers {
			exp, ok := want[caller]
			switch {
			case caller == "none":
				exp = 401
			case caller == "agent":
				exp = 403 // agents' tokens never call the HTTP API
			case !ok:
				t.Fatalf("matrixWant[%q] has no %s", key, caller)
			case rt.Scope == apikit.ScopeAdmin && caller != "admin":
				exp = 403 // only admins' tokens carry the admin scope
			}
			var body *strings.Reader
			if rt.Method == "GET" || rt.Method == "DELETE" {
				body = strings.NewReader("")
			} else {
				body = strings.NewReader("{}")
			}
			req := httptest.NewRequest(rt.Method, path, body)
			if body.Len() > 0 {
				req.Header.Set("Content-Type", "application/json")
			}
			if tok := f.tokens[caller]; tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != exp {
				t.Errorf("%s as %s: status %d, want %d: %s", name, caller, rec.Code, exp, rec.Body.String())
			}
			if rec.Code == 404 && key != "signed-in" && !strings.Contains(rec.Body.String(), "not found") {
				t.Errorf("%s as %s: a 404 that does not say what was not found: %s", name, caller, rec.Body.String())
			}
			if rec.Code == 403 && rule.Kind == "project" && caller != "agent" && rt.Scope != apikit.ScopeAdmin &&
				!strings.Contains(rec.Body.String(), "needs the "+rule.Role.String()+" role in project web") {
				t.Errorf("%s as %s: a 403 that does not name the role needed: %s", name, caller, rec.Body.String())
			}
			checked++
		}
	}
	if checked < 8*60 {
		t.Fatalf("only %d requests checked: the route table is smaller than expected", checked)
	}
}

// TestAccessBodies: the routes whose project is named in the body (or is
// every project the caller sees) decide in their services.
func TestAccessBodies(t *testing.T) {
	f := newAuthzFixture(t)
	e := f.e
	as := func(c string) reqOpt { return withToken(f.tokens[c]) }
	create := func(c, project, name string) *resp {
		return e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": project, "name": name}, as(c))
	}
	create("viewer", "web", "v").mustErr(t, 403, "needs the maintainer role in project web; you are a viewer there")
	create("developer", "web", "d").mustErr(t, 403, "needs the maintainer role in project web; you are a developer there")
	create("other", "web", "o").mustErr(t, 404, "project web not found")
	create("maintainer", "web", "m").must(t, 201)
	// A new project id becomes a project its creator owns.
	create("viewer", "viewers-own", "mine").must(t, 201)
	me := e.do("GET", "/api/v1/me", nil, as("viewer")).must(t, 200).detail()
	if got := fmt.Sprint(me["projects"]); !strings.Contains(got, "projectId:viewers-own role:owner") || !strings.Contains(got, "projectId:web role:viewer") {
		t.Errorf("me.projects = %s", got)
	}

	// Lists show each caller their projects only.
	names := func(c string) string {
		d := e.do("GET", "/api/v1/pipelines", nil, as(c)).must(t, 200).detail()
		var out []string
		for _, it := range d["items"].([]any) {
			out = append(out, it.(map[string]any)["name"].(string))
		}
		return strings.Join(out, ",")
	}
	if got := names("viewer"); got != "m,mine,site" {
		t.Errorf("viewer lists %q, want m,mine,site", got)
	}
	if got := names("other"); got != "" {
		t.Errorf("the other project's owner lists %q, want nothing", got)
	}
	if got := names("admin"); got != "m,mine,site" {
		t.Errorf("admin lists %q, want every pipeline", got)
	}
	// creatorId: the pipelines a user created (seed 001's filter).
	byM := e.do("GET", "/api/v1/pipelines?creatorId="+f.users["maintainer"], nil, as("admin")).must(t, 200).detail()
	if items := byM["items"].([]any); len(items) != 1 || items[0].(map[string]any)["name"] != "m" || items[0].(map[string]any)["creatorId"] != f.users["maintainer"] {
		t.Errorf("pipelines by creator: %v", byM)
	}
	e.do("GET", "/api/v1/pipelines?creatorId=alice", nil, as("admin")).mustErr(t, 400, "query parameter creatorId")
	projects := e.do("GET", "/api/v1/projects", nil, as("other")).must(t, 200).detail()
	if fmt.Sprint(projects["total"]) != "1" {
		t.Errorf("other sees projects %v, want ops only", projects)
	}

	// Moving a pipeline needs the maintainer role on both sides.
	pid := f.params["pipelineId"]
	e.do("PUT", "/api/v1/pipelines/"+pid, map[string]any{"projectId": "ops"}, as("maintainer")).mustErr(t, 404, "project ops not found")

	// Secrets and credentials.
	e.do("POST", "/api/v1/secrets", map[string]any{"name": "A", "value": "v1234", "projectId": "web"}, as("developer")).
		mustErr(t, 403, "needs the maintainer role in project web")
	e.do("POST", "/api/v1/secrets", map[string]any{"name": "A", "value": "v1234", "projectId": "web"}, as("maintainer")).must(t, 201)
	e.do("POST", "/api/v1/secrets", map[string]any{"name": "A", "value": "v1234", "pipelineId": pid}, as("other")).mustErr(t, 404, "pipeline "+pid+" not found")
	if l := e.do("GET", "/api/v1/secrets", nil, as("other")).must(t, 200).detail(); fmt.Sprint(l["total"]) != "0" {
		t.Errorf("other lists secrets %v", l)
	}
	global := map[string]any{"name": "everyone", "kind": "github", "accessToken": "ghp_0123456789abcdefghij"}
	e.do("POST", "/api/v1/credentials", global, as("owner")).mustErr(t, 403, "needs a site admin")
	e.do("POST", "/api/v1/credentials", global, as("admin")).must(t, 201)
	if l := e.do("GET", "/api/v1/credentials", nil, as("other")).must(t, 200).detail(); fmt.Sprint(l["total"]) != "1" {
		t.Errorf("other lists credentials %v, want the site-wide one only", l)
	}

	// Projects: members and deletion.
	e.do("PUT", "/api/v1/projects/web/members/"+f.users["other"], map[string]any{"role": "viewer"}, as("maintainer")).
		mustErr(t, 403, "needs the owner role in project web")
	e.do("PUT", "/api/v1/projects/web/members/"+f.users["other"], map[string]any{"role": "chief"}, as("owner")).
		mustErr(t, 400, `body.role: "chief" is not a role`)
	e.do("PUT", "/api/v1/projects/web/members/"+f.users["other"], map[string]any{"role": "viewer"}, as("owner")).must(t, 200)
	if got := names("other"); got != "m,site" {
		t.Errorf("a new viewer of web lists %q", got)
	}
	e.do("DELETE", "/api/v1/projects/web/members/"+f.users["owner"], nil, as("owner")).mustErr(t, 409, "last owner of project web")
	e.do("DELETE", "/api/v1/projects/web", nil, as("owner")).mustErr(t, 409, "project web still holds 2 pipeline(s), 2 secret(s), 1 credential(s)")
	e.do("POST", "/api/v1/projects", map[string]any{"projectId": "empty"}, as("developer")).must(t, 201)
	e.do("DELETE", "/api/v1/projects/empty", nil, as("developer")).must(t, 200)

	// Teams: admins manage them; a team's role reaches its members.
	e.do("POST", "/api/v1/teams", map[string]any{"name": "release"}, as("owner")).mustErr(t, 403, "")
	team := e.do("POST", "/api/v1/teams", map[string]any{"name": "release"}, as("admin")).must(t, 201).detail()
	tid := team["teamId"].(string)
	e.do("PUT", "/api/v1/teams/"+tid+"/members/"+f.users["other"], nil, as("admin")).must(t, 200)
	e.do("PUT", "/api/v1/projects/web/members/team:release", map[string]any{"role": "maintainer"}, as("owner")).must(t, 200)
	// Members by login, as an owner knows them.
	e.do("PUT", "/api/v1/projects/web/members/u_admin", map[string]any{"role": "viewer"}, as("owner")).must(t, 200)
	e.do("DELETE", "/api/v1/projects/web/members/u_admin", nil, as("owner")).must(t, 200)
	e.do("PUT", "/api/v1/projects/web/members/nobody-here", map[string]any{"role": "viewer"}, as("owner")).mustErr(t, 404, "user nobody-here not found")
	e.do("PUT", "/api/v1/projects/web/members/team:nope", map[string]any{"role": "viewer"}, as("owner")).mustErr(t, 404, "team nope not found")
	e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "web", "name": "by-team"}, as("other")).must(t, 201)
	me = e.do("GET", "/api/v1/me", nil, as("other")).must(t, 200).detail()
	if got := fmt.Sprint(me["projects"]); !strings.Contains(got, "projectId:web role:maintainer via:[team:release]") {
		t.Errorf("other's roles: %s", got)
	}
	e.do("DELETE", "/api/v1/teams/"+tid, nil, as("admin")).must(t, 200)
	e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "web", "name": "after"}, as("other")).mustErr(t, 403, "you are a viewer there")
}

// TestApproversByTeamAndRole: a gate names a login, a team or a role;
// only developers of the run's project among them decide (the real
// scheduler records the decision).
func TestApproversByTeamAndRole(t *testing.T) {
	f := newAuthzFixture(t, func(c *Config) {
		c.Runs = schedulerControl{scheduler.New(scheduler.Options{Store: c.Store, Catalog: action.Builtins(), Now: c.Clock})}
		c.Approvals = c.Runs.(schedulerControl).Scheduler
	})
	e := f.e
	ctx := context.Background()
	team := &store.Team{ID: runnel.NewID("tm"), Name: "release", CreatedAt: time.Now()}
	if err := e.st.CreateTeam(ctx, team); err != nil {
		t.Fatal(err)
	}
	if err := e.st.AddTeamMember(ctx, team.ID, f.users["viewer"]); err != nil {
		t.Fatal(err)
	}
	// gate runs a pipeline of project web whose run waits for approvers.
	gate := func(approvers ...string) string {
		t.Helper()
		spec := map[string]any{"namespace": "gated", "version": "v1", "approval": map[string]any{"approvers": approvers},
			"stages": []any{map[string]any{"name": "s", "jobs": []any{map[string]any{"name": "j", "steps": []any{map[string]any{"run": "true"}}}}}}}
		pid := e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "web", "name": runnel.NewID("gated"), "spec": spec},
			withToken(f.tokens["maintainer"])).must(t, 201).detail()["pipelineId"].(string)
		rid := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil, withToken(f.tokens["developer"])).must(t, 200).detail()["runId"].(string)
		list, err := e.st.ListApprovals(ctx, rid)
		if err != nil || len(list) != 1 {
			t.Fatalf("gates of run %s: %v %v", rid, list, err)
		}
		return list[0].ID
	}
	approve := func(c, id string) *resp {
		return e.do("POST", "/api/v1/approvals/"+id+"/approve", nil, withToken(f.tokens[c]))
	}
	byTeam := gate("team:release")
	// The viewer is in the team but may not control runs.
	approve("viewer", byTeam).mustErr(t, 403, "needs the developer role in project web")
	approve("developer", byTeam).mustErr(t, 403, "only team:release")
	if err := e.st.AddTeamMember(ctx, team.ID, f.users["developer"]); err != nil {
		t.Fatal(err)
	}
	byRole := gate("role:maintainer")
	byLogin := gate("u_maintainer")
	anyDev := gate()
	for _, c := range []struct{ caller, gate, by string }{
		{"developer", byTeam, "u_developer"}, {"owner", byRole, "u_owner"}, {"maintainer", byLogin, "u_maintainer"}, {"admin", anyDev, "u_admin"},
	} {
		d := approve(c.caller, c.gate).must(t, 200).detail()
		if d["decidedBy"] != c.by || d["status"] != "approved" {
			t.Errorf("gate %s: decided by %v, status %v; want %s, approved", c.gate, d["decidedBy"], d["status"], c.by)
		}
	}
	approve("developer", gate("role:maintainer")).mustErr(t, 403, "only role:maintainer")
	approve("owner", gate("u_maintainer")).mustErr(t, 403, "only u_maintainer")
	approve("other", gate("u_other")).mustErr(t, 404, "not found")
}

// TestStreamAccess: the WebSocket gateway checks each subscription by the
// same rules: what a caller cannot see is not found, and a stream of every
// run carries only their projects' events.
func TestStreamAccess(t *testing.T) {
	var hub *event.Hub
	f := newAuthzFixture(t, func(c *Config) {
		hub = event.NewHub(event.HubOptions{Store: c.Store, Poll: 50 * time.Millisecond})
		c.Events = hub
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go hub.Run(ctx)
	e := f.e
	dial := func(caller string) *websocket.Conn {
		t.Helper()
		c, _, err := websocket.Dial(ctx, strings.Replace(e.http.URL, "http", "ws", 1)+"/api/v1/ws",
			&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + f.tokens[caller]}}})
		if err != nil {
			t.Fatalf("dial as %s: %v", caller, err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	read := func(c *websocket.Conn) map[string]any {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		_, data, err := c.Read(rctx)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.Unmarshal(data, &m)
		return m
	}
	for _, params := range []map[string]any{{"pipelineId": f.params["pipelineId"]}, {"runId": f.params["runId"]}, {"projectId": "web"}} {
		other := dial("other")
		wsWrite(t, other, map[string]any{"action": "subscribe", "channel": "status", "params": params})
		if m := read(other); m["type"] != "error" || !strings.Contains(fmt.Sprint(m["data"]), "not found") {
			t.Errorf("the other project's owner subscribing to %v: %v", params, m)
		}
		viewer := dial("viewer")
		wsWrite(t, viewer, map[string]any{"action": "subscribe", "channel": "status", "params": params})
		if m := read(viewer); m["type"] == "error" {
			t.Errorf("a viewer subscribing to %v: %v", params, m)
		}
	}
	other := dial("other")
	wsWrite(t, other, map[string]any{"action": "subscribe", "channel": "logs", "params": map[string]any{"stepRunId": f.params["stepRunId"]}})
	if m := read(other); m["type"] != "error" || !strings.Contains(fmt.Sprint(m["data"]), "step run") {
		t.Errorf("another project's step log: %v", m)
	}
	// Every run's statuses: the other owner's stream stays silent while a
	// run of web changes; the viewer's carries it.
	all := dial("other")
	wsWrite(t, all, map[string]any{"action": "subscribe", "channel": "status", "params": map[string]any{}})
	if m := read(all); m["type"] != "subscribed" {
		t.Fatalf("subscribe to every run: %v", m)
	}
	mine := dial("viewer")
	wsWrite(t, mine, map[string]any{"action": "subscribe", "channel": "status", "params": map[string]any{}})
	if m := read(mine); m["type"] != "subscribed" {
		t.Fatalf("subscribe to every run: %v", m)
	}
	if err := e.st.UpdateRunTx(ctx, f.params["runId"], func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		tree.Run.Status = runnel.RunPaused
		return tx.UpdateRun(tree.Run)
	}); err != nil {
		t.Fatal(err)
	}
	if m := read(mine); m["type"] != "run.status" {
		t.Errorf("the viewer's stream: %v", m)
	}
	rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer rcancel()
	if _, data, err := all.Read(rctx); err == nil {
		t.Errorf("the other project's owner saw web's run: %s", data)
	}
}

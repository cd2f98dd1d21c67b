package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/store"
)

// onlineWithin is a TEST DOUBLE of AgentControl, standing in for the
// scheduler (whose own Online and HandBack are exercised by the scheduler's
// and the process tests): an agent is online when it was last seen less than
// window before now, and HandBack only records its calls.
type onlineWithin struct {
	window time.Duration

	mu        sync.Mutex
	handBacks []string
}

func (o *onlineWithin) Online(a *store.Agent, now time.Time) bool {
	return a.LastSeenAt != nil && now.Sub(*a.LastSeenAt) < o.window
}

func (o *onlineWithin) HandBack(_ context.Context, agentID, reason string, keep []string) ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.handBacks = append(o.handBacks, fmt.Sprintf("%s reason=%s keep=%v", agentID, reason, keep))
	return nil, nil
}

func (o *onlineWithin) HandBacks() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.handBacks)
}

// agentEnv is an API with the onlineWithin double (30 s, the server's
// default) and the real scheduler as RunControl, so that triggered runs
// queue real jobs an agent can claim from the store.
type agentEnv struct {
	*env
	ctl *onlineWithin
	// admin is an admin token (subject admin_root).
	admin string
}

func newAgentEnv(t *testing.T) *agentEnv {
	t.Helper()
	ctl := &onlineWithin{window: 30 * time.Second}
	e := newEnvWith(t, func(c *Config) {
		c.Runs = schedulerControl{scheduler.New(scheduler.Options{Store: c.Store, Catalog: action.Builtins(), Now: c.Clock})}
		c.Agents = ctl
	})
	return &agentEnv{env: e, ctl: ctl, admin: e.addToken("root", "admin_root", "admin", nil)}
}

// addAgent stores a remote agent as the gRPC server does: created, then
// reporting itself. lastSeen nil leaves it never heard from (no report).
// Agents are created a second apart, so that the list order is known.
func (e *agentEnv) addAgent(name string, labels map[string]string, lastSeen *time.Time) string {
	e.t.Helper()
	ctx := context.Background()
	id := newID("agent_")
	n, _ := e.st.ListAgents(ctx)
	created := e.clock.Now().Add(-time.Hour + time.Duration(len(n))*time.Second)
	a := &store.Agent{ID: id, Name: name, Kind: "remote", ReportedLabels: labels, Capacity: 2, CreatedAt: created}
	if err := e.st.CreateAgent(ctx, a); err != nil {
		e.t.Fatalf("create agent: %v", err)
	}
	if lastSeen == nil {
		return id
	}
	a.Version, a.Hostname, a.Platform, a.Capacity = "1.4.0", name+".example.com", "linux/amd64", 4
	if err := e.st.ReportAgent(ctx, a); err != nil {
		e.t.Fatalf("report agent: %v", err)
	}
	// ReportAgent stamps the store's clock; the test's is the one that counts.
	if err := e.st.TouchAgent(ctx, id, *lastSeen); err != nil {
		e.t.Fatalf("touch agent: %v", err)
	}
	return id
}

// claimFor triggers a run of a fresh pipeline and leases its first queued
// job to agentID, as the dispatcher does; it returns the job run id.
func (e *agentEnv) claimFor(pipeline, agentID string) string {
	e.t.Helper()
	ctx := context.Background()
	pid := e.createPipeline(pipeline, map[string]any{"spec": goodSpec})
	e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(e.t, 200)
	routes, err := e.st.QueuedRoutes(ctx, e.clock.Now())
	if err != nil || len(routes) == 0 {
		e.t.Fatalf("queued routes: %v %v", routes, err)
	}
	j, err := e.st.ClaimJob(ctx, agentID, routes, time.Minute)
	if err != nil {
		e.t.Fatalf("claim job: %v", err)
	}
	return j.ID
}

// list lists the agents through the API, checking the list fields.
func (e *agentEnv) list(query string) []map[string]any {
	e.t.Helper()
	d := e.do("GET", "/api/v1/agents"+query, nil).must(e.t, 200).detail()
	var out []map[string]any
	for _, x := range d["items"].([]any) {
		out = append(out, x.(map[string]any))
	}
	if d["total"] != float64(len(out)) || d["page"] != 1.0 || d["pageSize"] != float64(len(out)) {
		e.t.Errorf("list%s: total %v page %v pageSize %v for %d items", query, d["total"], d["page"], d["pageSize"], len(out))
	}
	return out
}

func ids(items []map[string]any) []string {
	var out []string
	for _, it := range items {
		out = append(out, it["agentId"].(string))
	}
	return out
}

func TestAgentsListAndGet(t *testing.T) {
	e := newAgentEnv(t)
	now := e.clock.Now()
	recent, stale := now.Add(-5*time.Second), now.Add(-2*time.Minute)
	busy := e.addAgent("busy", map[string]string{"pool": "a", "os": "linux"}, &recent)
	gone := e.addAgent("gone", map[string]string{"pool": "b"}, &stale)
	never := e.addAgent("never", nil, nil)
	off := e.addAgent("off", map[string]string{"pool": "a"}, &recent)
	if _, err := e.st.UpdateAgentAdmin(context.Background(), off, nil, true); err != nil {
		t.Fatal(err)
	}
	job := e.claimFor("build", busy)

	all := e.list("")
	if got := ids(all); !slices.Equal(got, []string{busy, gone, never, off}) {
		t.Fatalf("agents %v, want oldest first %v", got, []string{busy, gone, never, off})
	}
	b := all[0]
	want := map[string]any{
		"agentId": busy, "name": "busy", "kind": "remote", "status": "online", "labelsOverridden": false,
		"capacity": 4.0, "runningJobs": 1.0, "version": "1.4.0", "hostname": "busy.example.com", "platform": "linux/amd64",
		"disabled": false, "registrationTokenId": "", "createdAt": "2026-03-02T09:00:00.000Z", "lastSeenAt": "2026-03-02T09:59:55.000Z",
	}
	for k, v := range want {
		if b[k] != v {
			t.Errorf("busy agent %s = %v, want %v", k, b[k], v)
		}
	}
	if fmt.Sprint(b["runningJobRunIds"]) != "["+job+"]" {
		t.Errorf("busy agent runningJobRunIds %v, want [%s]", b["runningJobRunIds"], job)
	}
	if fmt.Sprint(b["labels"]) != "map[os:linux pool:a]" || fmt.Sprint(b["reportedLabels"]) != "map[os:linux pool:a]" {
		t.Errorf("busy agent labels %v reported %v", b["labels"], b["reportedLabels"])
	}
	statuses := map[string]string{}
	for _, a := range all {
		statuses[a["name"].(string)] = a["status"].(string)
		if a["agentId"] != busy && (a["runningJobs"] != 0.0 || len(a["runningJobRunIds"].([]any)) != 0) {
			t.Errorf("idle agent %v holds jobs: %v %v", a["name"], a["runningJobs"], a["runningJobRunIds"])
		}
	}
	// Disabled wins over online: the agent is connected but gets no work.
	if fmt.Sprint(statuses) != "map[busy:online gone:offline never:offline off:disabled]" {
		t.Errorf("statuses %v", statuses)
	}
	nv := all[2]
	if nv["lastSeenAt"] != nil || fmt.Sprint(nv["labels"]) != "map[]" || fmt.Sprint(nv["reportedLabels"]) != "map[]" {
		t.Errorf("never-seen agent: %v", nv)
	}

	for q, want := range map[string][]string{
		"?status=online": {busy}, "?status=offline": {gone, never}, "?status=disabled": {off},
	} {
		if got := ids(e.list(q)); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", q, got, want)
		}
	}
	e.do("GET", "/api/v1/agents?status=busy", nil).mustErr(t, 400, `query parameter status: must be one of online, offline, disabled; got "busy"`)
	e.do("GET", "/api/v1/agents?status=", nil).mustErr(t, 400, "query parameter status: must be one of online, offline, disabled")
	e.do("GET", "/api/v1/agents?status=online&status=offline", nil).mustErr(t, 400, "query parameter status: given 2 times")
	e.do("GET", "/api/v1/agents?page=2", nil).mustErr(t, 400, `query: unknown parameter "page"; accepted: status`)

	// One agent, with the job it holds; the same shape as in the list.
	d := e.do("GET", "/api/v1/agents/"+busy, nil).must(t, 200).detail()
	if d["agentId"] != busy || d["status"] != "online" || d["runningJobs"] != 1.0 || fmt.Sprint(d["runningJobRunIds"]) != "["+job+"]" {
		t.Errorf("get agent: %v", d)
	}
	// Status follows the clock: 30 s after its last contact the agent is
	// offline, still holding its job until the lease says otherwise.
	e.clock.Advance(25 * time.Second)
	if d := e.do("GET", "/api/v1/agents/"+busy, nil).must(t, 200).detail(); d["status"] != "offline" || d["runningJobs"] != 1.0 {
		t.Errorf("after 30 s of silence: status %v, runningJobs %v", d["status"], d["runningJobs"])
	}
	if got := ids(e.list("?status=online")); len(got) != 0 {
		t.Errorf("online after 30 s of silence: %v", got)
	}

	// The admin token reads the same; reading needs no admin.
	e.do("GET", "/api/v1/agents/"+gone, nil, withToken(e.admin)).must(t, 200)
	e.do("GET", "/api/v1/agents/agent_zzzzzzzzzzzzzzzzzzzz", nil).mustErr(t, 404, "agent agent_zzzzzzzzzzzzzzzzzzzz not found")
	e.do("GET", "/api/v1/agents/"+busy+"?verbose=1", nil).mustErr(t, 400, `query: unknown parameter "verbose"; none are accepted here`)
	for _, bad := range []string{"pl_aaaaaaaaaaaaaaaaaaaa", "agent-1", "agent_SHOUT0000000000", "agent_aaaaaaaaaa%2Fbbbbbbbbbb"} {
		e.do("GET", "/api/v1/agents/"+bad, nil).mustErr(t, 400, "path parameter agentId", "is not an agent id")
	}
}

// Without an AgentControl (no scheduler wired) nothing is online, but
// disabled agents still say so.
func TestAgentsWithoutControl(t *testing.T) {
	e := &agentEnv{env: newEnv(t)}
	now := e.clock.Now()
	a := e.addAgent("a", nil, &now)
	if d := e.do("GET", "/api/v1/agents/"+a, nil).must(t, 200).detail(); d["status"] != "offline" {
		t.Errorf("status %v without an AgentControl, want offline", d["status"])
	}
	if _, err := e.st.UpdateAgentAdmin(context.Background(), a, nil, true); err != nil {
		t.Fatal(err)
	}
	if d := e.do("GET", "/api/v1/agents/"+a, nil).must(t, 200).detail(); d["status"] != "disabled" {
		t.Errorf("status %v, want disabled", d["status"])
	}
}

func TestAgentUpdate(t *testing.T) {
	e := newAgentEnv(t)
	ctx := context.Background()
	now := e.clock.Now()
	id := e.addAgent("a1", map[string]string{"pool": "a", "os": "linux"}, &now)
	path := "/api/v1/agents/" + id
	put := func(body any) map[string]any {
		t.Helper()
		return e.do("PUT", path, body, withToken(e.admin)).must(t, 200).detail()
	}

	// Labels replace the reported ones for routing; the reported ones stay.
	d := put(map[string]any{"labels": map[string]any{"pool": "b", "gpu": "true", "team/infra": ""}})
	if fmt.Sprint(d["labels"]) != "map[gpu:true pool:b team/infra:]" || fmt.Sprint(d["reportedLabels"]) != "map[os:linux pool:a]" ||
		d["labelsOverridden"] != true || d["disabled"] != false || d["status"] != "online" {
		t.Errorf("labels set: %v", d)
	}
	if a, _ := e.st.GetAgent(ctx, id); fmt.Sprint(a.Labels()) != "map[gpu:true pool:b team/infra:]" {
		t.Errorf("stored routing labels %v", a.Labels())
	}
	// The agent reconnecting with other labels does not undo the override.
	if err := e.st.ReportAgent(ctx, &store.Agent{ID: id, Name: "a1", ReportedLabels: map[string]string{"pool": "c"}, Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	d = e.do("GET", path, nil).must(t, 200).detail()
	if fmt.Sprint(d["labels"]) != "map[gpu:true pool:b team/infra:]" || fmt.Sprint(d["reportedLabels"]) != "map[pool:c]" {
		t.Errorf("after a new report: labels %v reported %v", d["labels"], d["reportedLabels"])
	}

	// Only the fields present change.
	d = put(map[string]any{"disabled": true})
	if d["disabled"] != true || d["status"] != "disabled" || d["labelsOverridden"] != true || fmt.Sprint(d["labels"]) != "map[gpu:true pool:b team/infra:]" {
		t.Errorf("disabled: %v", d)
	}
	d = put(map[string]any{})
	if d["disabled"] != true || d["labelsOverridden"] != true {
		t.Errorf("empty update changed something: %v", d)
	}
	// null goes back to the reported labels; disabled is kept.
	d = put(rawBody(`{"labels": null}`))
	if fmt.Sprint(d["labels"]) != "map[pool:c]" || d["labelsOverridden"] != false || d["disabled"] != true {
		t.Errorf("labels reset: %v", d)
	}
	if a, _ := e.st.GetAgent(ctx, id); a.AdminLabels != nil {
		t.Errorf("admin labels after null: %v", a.AdminLabels)
	}
	// {} is an override too: no labels at all.
	d = put(map[string]any{"labels": map[string]any{}, "disabled": false})
	if fmt.Sprint(d["labels"]) != "map[]" || d["labelsOverridden"] != true || d["disabled"] != false || d["status"] == "disabled" {
		t.Errorf("empty labels: %v", d)
	}

	many := map[string]any{}
	for i := range 65 {
		many[fmt.Sprintf("k%02d", i)] = "v"
	}
	bad := []struct {
		body any
		msg  string
	}{
		{map[string]any{"labels": map[string]any{"bad key": "x"}}, `body.labels.bad key: invalid label key "bad key"`},
		{map[string]any{"labels": map[string]any{"-pool": "x"}}, "body.labels.-pool: invalid label key"},
		{map[string]any{"labels": map[string]any{"pool": "a b"}}, `body.labels.pool: invalid label value "a b" for pool`},
		{map[string]any{"labels": map[string]any{"pool": "a,b"}}, "body.labels.pool: invalid label value"},
		{map[string]any{"labels": map[string]any{"pool": 1}}, "body.labels.pool: must be a string, got number"},
		{map[string]any{"labels": []any{"pool=a"}}, "body.labels: must be an object of string values, got array"},
		{map[string]any{"labels": many}, "body.labels: 65 labels, at most 64"},
		{map[string]any{"disabled": "yes"}, "body.disabled: must be true or false, got string"},
		{rawBody(`{"disabled": null}`), "body.disabled: must be true or false, got null"},
		{map[string]any{"labls": map[string]any{}}, `body: unknown field "labls" (did you mean "labels"?)`},
		{map[string]any{"name": "x"}, `body: unknown field "name"; accepted: labels, disabled`},
		{rawBody(`{"disabled": true, "disabled": false}`), `body: field "disabled" given twice`},
		{rawBody(""), "body: empty; send a JSON object"},
		{rawBody(`{"labels":`), "body: malformed JSON"},
	}
	before, _ := e.st.GetAgent(ctx, id)
	for _, b := range bad {
		e.do("PUT", path, b.body, withToken(e.admin)).mustErr(t, 400, b.msg)
	}
	if after, _ := e.st.GetAgent(ctx, id); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a rejected update changed the agent:\n%+v\n%+v", before, after)
	}
	e.do("PUT", path+"?force=1", map[string]any{}, withToken(e.admin)).mustErr(t, 400, `query: unknown parameter "force"`)
	e.do("PUT", path, map[string]any{}, withToken(e.admin), withHeader("Content-Type", "text/plain")).mustErr(t, 415, "header Content-Type")

	// A user token may read agents, not change them; nothing is written.
	e.do("PUT", path, map[string]any{"disabled": true}).mustErr(t, 403, "PUT /api/v1/agents/"+id+" needs a site admin")
	e.do("DELETE", path, nil).mustErr(t, 403, "DELETE /api/v1/agents/"+id+" needs a site admin")
	if a, _ := e.st.GetAgent(ctx, id); a == nil || a.Disabled {
		t.Errorf("a user token changed the agent: %+v", a)
	}
	// The role is checked before the agent is looked up: no probing with a
	// user token.
	e.do("PUT", "/api/v1/agents/agent_zzzzzzzzzzzzzzzzzzzz", map[string]any{}).mustErr(t, 403, "needs a site admin")
	e.do("PUT", "/api/v1/agents/agent_zzzzzzzzzzzzzzzzzzzz", map[string]any{}, withToken(e.admin)).mustErr(t, 404, "agent agent_zzzzzzzzzzzzzzzzzzzz not found")
	e.do("PUT", "/api/v1/agents/rt_aaaaaaaaaaaaaaaaaaaa", map[string]any{}, withToken(e.admin)).mustErr(t, 400, "path parameter agentId")
	if n := len(e.ctl.HandBacks()); n != 0 {
		t.Errorf("HandBack called %d times without a deletion", n)
	}
}

func TestAgentDelete(t *testing.T) {
	e := newAgentEnv(t)
	ctx := context.Background()
	now := e.clock.Now()
	id := e.addAgent("doomed", map[string]string{"pool": "a"}, &now)
	keep := e.addAgent("keeper", nil, &now)
	job := e.claimFor("build", id)
	// The agent's own API token, as RegisterAgent stores it.
	secret := e.addToken("agent doomed", id, "agent", nil)
	sum := sha256.Sum256([]byte(secret))
	if _, err := e.st.TokenByHash(ctx, sum[:]); err != nil {
		t.Fatalf("agent token before deletion: %v", err)
	}

	r := e.do("DELETE", "/api/v1/agents/"+id, nil, withToken(e.admin)).must(t, 200)
	if _, has := r.env["detail"]; has {
		t.Errorf("delete answer carries a detail: %s", r.body)
	}
	e.do("GET", "/api/v1/agents/"+id, nil).mustErr(t, 404, "agent "+id+" not found")
	if got := ids(e.list("")); !slices.Equal(got, []string{keep}) {
		t.Errorf("agents after deletion: %v", got)
	}
	if _, err := e.st.TokenByHash(ctx, sum[:]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the deleted agent's token: %v, want ErrNotFound", err)
	}
	// Its jobs are handed back at once (the scheduler retries or fails them).
	want := []string{id + " reason=the agent was deleted by admin_root keep=[]"}
	if got := e.ctl.HandBacks(); !slices.Equal(got, want) {
		t.Errorf("HandBack calls %q, want %q", got, want)
	}
	// The double hands nothing back, so the store still shows the lease; the
	// scheduler's HandBack is what ends it.
	if jobs, _ := e.st.JobsOfAgent(ctx, id); len(jobs) != 1 || jobs[0].ID != job {
		t.Errorf("jobs of the deleted agent: %v", jobs)
	}

	e.do("DELETE", "/api/v1/agents/"+id, nil, withToken(e.admin)).mustErr(t, 404, "agent "+id+" not found")
	e.do("DELETE", "/api/v1/agents/not-an-id", nil, withToken(e.admin)).mustErr(t, 400, "path parameter agentId")
	e.do("DELETE", "/api/v1/agents/"+keep+"?cascade=1", nil, withToken(e.admin)).mustErr(t, 400, `unknown parameter "cascade"`)
	if got := e.ctl.HandBacks(); len(got) != 1 {
		t.Errorf("HandBack called for a failed deletion: %q", got)
	}
	// The agent's token is now unknown, not merely refused.
	e.do("GET", "/api/v1/agents", nil, withToken(secret)).mustErr(t, 401, "unknown or revoked token")
}

// TestAgentTokenRefused: an agent's API token is for the gRPC agent protocol
// only; every user API route refuses it, agents' own routes included.
func TestAgentTokenRefused(t *testing.T) {
	e := newAgentEnv(t)
	now := e.clock.Now()
	id := e.addAgent("a1", nil, &now)
	tok := e.addToken("agent a1", id, "agent", nil)
	e.do("GET", "/api/v1/pipelines", nil, withToken(tok)).
		mustErr(t, 403, "header Authorization: agent tokens (agent a1) cannot call the user API; use a user token")
	for _, rt := range e.srv.routes() {
		if rt.Public {
			continue
		}
		var body any
		if rt.Method == "POST" || rt.Method == "PUT" {
			body = map[string]any{}
		}
		path := strings.ReplaceAll(samplePath(rt.Path), "agent_aaaaaaaaaaaaaaaaaaaa", id)
		e.do(rt.Method, path, body, withToken(tok)).mustErr(t, 403, "agent tokens (agent a1) cannot call the user API")
	}
	if _, err := e.st.GetAgent(context.Background(), id); err != nil {
		t.Errorf("the agent after its token tried every route: %v", err)
	}
}

func TestRegistrationTokens(t *testing.T) {
	e := newAgentEnv(t)
	ctx := context.Background()
	base := "/api/v1/registration-tokens"
	create := func(body any) (*resp, map[string]any) {
		t.Helper()
		r := e.do("POST", base, body, withToken(e.admin)).must(t, http.StatusCreated)
		return r, r.detail()
	}

	// An empty body: unnamed, no expiry, no use limit.
	r, plain := create(nil)
	value, _ := plain["token"].(string)
	if !strings.HasPrefix(value, "rnlr_") || len(value) != len("rnlr_")+48 {
		t.Fatalf("token value %q, want rnlr_ and 48 hex digits", value)
	}
	tid := plain["tokenId"].(string)
	wantPlain := map[string]any{"name": "", "createdBy": "admin_root", "createdAt": "2026-03-02T10:00:00.000Z",
		"expiresAt": nil, "maxUses": 0.0, "uses": 0.0, "lastUsedAt": nil}
	for k, v := range wantPlain {
		if plain[k] != v {
			t.Errorf("created token %s = %v, want %v", k, plain[k], v)
		}
	}
	if loc := r.header.Get("Location"); loc != base+"/"+tid {
		t.Errorf("Location %q, want %s/%s", loc, base, tid)
	}
	_, empty := create(rawBody(""))
	_, limited := create(map[string]any{"name": "pool a", "expiresAt": "2026-03-03T10:00:00Z", "maxUses": 2})
	if limited["name"] != "pool a" || limited["expiresAt"] != "2026-03-03T10:00:00.000Z" || limited["maxUses"] != 2.0 {
		t.Errorf("limited token: %v", limited)
	}
	// Other offsets are accepted and shown in UTC.
	_, offset := create(map[string]any{"expiresAt": "2026-03-02T12:30:00+02:00"})
	if offset["expiresAt"] != "2026-03-02T10:30:00.000Z" {
		t.Errorf("expiresAt with an offset: %v", offset["expiresAt"])
	}
	values := []string{value, empty["token"].(string), limited["token"].(string), offset["token"].(string)}
	if len(slices.Compact(slices.Sorted(slices.Values(values)))) != len(values) {
		t.Errorf("token values repeat: %v", values)
	}

	// The list never shows a value.
	lr := e.do("GET", base, nil, withToken(e.admin)).must(t, 200)
	items := lr.detail()["items"].([]any)
	if len(items) != 4 || lr.detail()["total"] != 4.0 {
		t.Fatalf("list: %s", lr.body)
	}
	for _, v := range values {
		if strings.Contains(string(lr.body), v) || strings.Contains(string(lr.body), strings.TrimPrefix(v, "rnlr_")) {
			t.Errorf("the list shows a token value: %s", lr.body)
		}
	}
	for _, it := range items {
		if _, has := it.(map[string]any)["token"]; has {
			t.Errorf("list item with a token field: %v", it)
		}
	}

	// Only the SHA-256 of the value is stored, and it registers agents:
	// RegisterAgent finds the token by that hash.
	register := func(value, name string) (string, error) {
		sum := sha256.Sum256([]byte(value))
		agentID := newID("agent_")
		tokSum := sha256.Sum256([]byte("rnla_" + agentID))
		err := e.st.RegisterAgent(ctx, sum[:], e.clock.Now(), &store.Agent{ID: agentID, Name: name, Kind: "remote", Capacity: 1},
			&store.APIToken{ID: newID("tok_"), Name: "agent " + name, Hash: tokSum[:]})
		return agentID, err
	}
	agentID, err := register(limited["token"].(string), "first")
	if err != nil {
		t.Fatalf("register with the created token: %v", err)
	}
	if _, err := register(limited["token"].(string), "second"); err != nil {
		t.Fatalf("second registration: %v", err)
	}
	if _, err := register(limited["token"].(string), "third"); !errors.Is(err, store.ErrRegistrationRejected) {
		t.Errorf("third registration of a maxUses 2 token: %v, want ErrRegistrationRejected", err)
	}
	if _, err := register("rnlr_"+strings.Repeat("0", 48), "stranger"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("registration with an unknown value: %v, want ErrNotFound", err)
	}
	// The listing counts the uses; the agent names its token.
	for _, it := range e.do("GET", base, nil, withToken(e.admin)).must(t, 200).detail()["items"].([]any) {
		m := it.(map[string]any)
		if m["tokenId"] == limited["tokenId"] && (m["uses"] != 2.0 || m["lastUsedAt"] != "2026-03-02T10:00:00.000Z") {
			t.Errorf("used token: %v", m)
		}
	}
	if d := e.do("GET", "/api/v1/agents/"+agentID, nil).must(t, 200).detail(); d["registrationTokenId"] != limited["tokenId"] {
		t.Errorf("registered agent's token id %v, want %v", d["registrationTokenId"], limited["tokenId"])
	}

	bad := []struct {
		body any
		msg  string
	}{
		{map[string]any{"expiresAt": "2026-03-02T09:59:59Z"}, "body.expiresAt: 2026-03-02T09:59:59Z is not in the future"},
		{map[string]any{"expiresAt": "2026-03-02T10:00:00Z"}, "is not in the future"},
		{map[string]any{"expiresAt": "tomorrow"}, `body.expiresAt: "tomorrow" is not an RFC 3339 time such as 2026-12-31T23:59:59Z`},
		{map[string]any{"expiresAt": "2026-03-03"}, "body.expiresAt: \"2026-03-03\" is not an RFC 3339 time"},
		{map[string]any{"expiresAt": 1772445600}, "body.expiresAt: must be a string, got number"},
		{map[string]any{"maxUses": -1}, "body.maxUses: -1; want 0 (unlimited) to 1000000"},
		{map[string]any{"maxUses": 1000001}, "body.maxUses: 1000001; want 0 (unlimited) to 1000000"},
		{map[string]any{"maxUses": 1.5}, "body.maxUses: must be an integer, got number"},
		{map[string]any{"name": "a\nb"}, "body.name: control character"},
		{map[string]any{"name": strings.Repeat("n", 201)}, "body.name: at most 200 characters"},
		{map[string]any{"ttl": "1h"}, `body: unknown field "ttl"; accepted: name, expiresAt, maxUses`},
		{map[string]any{"token": "rnlr_mine"}, `body: unknown field "token"`},
		{rawBody(`[]`), "body: must be a JSON object, got an array"},
	}
	for _, b := range bad {
		e.do("POST", base, b.body, withToken(e.admin)).mustErr(t, 400, b.msg)
	}

	// Admin only, every route; the role is checked before anything else.
	e.do("POST", base, nil).mustErr(t, 403, "POST /api/v1/registration-tokens needs a site admin")
	e.do("GET", base, nil).mustErr(t, 403, "GET /api/v1/registration-tokens needs a site admin")
	e.do("DELETE", base+"/"+tid, nil).mustErr(t, 403, "DELETE /api/v1/registration-tokens/"+tid+" needs a site admin")
	e.do("DELETE", base+"/bogus", nil).mustErr(t, 403, "needs a site admin")
	e.do("GET", base+"?all=1", nil, withToken(e.admin)).mustErr(t, 400, `query: unknown parameter "all"`)

	// Deleting stops registrations with it; its agents stay.
	e.do("DELETE", base+"/"+limited["tokenId"].(string), nil, withToken(e.admin)).must(t, 200)
	e.do("DELETE", base+"/"+limited["tokenId"].(string), nil, withToken(e.admin)).mustErr(t, 404, "registration token "+limited["tokenId"].(string)+" not found")
	if _, err := register(limited["token"].(string), "late"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("registration with a deleted token: %v, want ErrNotFound", err)
	}
	e.do("GET", "/api/v1/agents/"+agentID, nil).must(t, 200)
	if n := len(e.do("GET", base, nil, withToken(e.admin)).must(t, 200).detail()["items"].([]any)); n != 3 {
		t.Errorf("%d tokens after a deletion, want 3", n)
	}
	e.do("DELETE", base+"/tok_aaaaaaaaaaaaaaaaaaaa", nil, withToken(e.admin)).mustErr(t, 400, "path parameter tokenId", "registration token ids are rt_")
	e.do("DELETE", base+"/rt_zzzzzzzzzzzzzzzzzzzz", nil, withToken(e.admin)).mustErr(t, 404, "registration token rt_zzzzzzzzzzzzzzzzzzzz not found")
}

// A registration token that expired stops registering; the store compares
// with the time it is given.
func TestRegistrationTokenExpiry(t *testing.T) {
	e := newAgentEnv(t)
	d := e.do("POST", "/api/v1/registration-tokens", map[string]any{"expiresAt": "2026-03-02T11:00:00Z"}, withToken(e.admin)).must(t, 201).detail()
	sum := sha256.Sum256([]byte(d["token"].(string)))
	reg := func(at time.Time) error {
		id := newID("agent_")
		h := sha256.Sum256([]byte(id))
		return e.st.RegisterAgent(context.Background(), sum[:], at, &store.Agent{ID: id, Name: "x", Kind: "remote", Capacity: 1},
			&store.APIToken{ID: newID("tok_"), Hash: h[:]})
	}
	if err := reg(e.clock.Now().Add(59 * time.Minute)); err != nil {
		t.Errorf("before expiry: %v", err)
	}
	if err := reg(e.clock.Now().Add(time.Hour)); !errors.Is(err, store.ErrRegistrationRejected) {
		t.Errorf("at expiry: %v, want ErrRegistrationRejected", err)
	}
}

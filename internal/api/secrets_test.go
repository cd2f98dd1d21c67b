package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/agent"
	"github.com/runnel-ci/runnel/internal/backend/local"
	"github.com/runnel-ci/runnel/internal/engine"
	"github.com/runnel-ci/runnel/internal/scheduler"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

// secretsEnv is an env whose every answer, header and log line is checked
// for the secret values the test sent: values are write-only, no answer may
// ever contain one, whether the request succeeded or not.
type secretsEnv struct {
	*env
	values []string
}

func newSecretsEnv(t *testing.T, tweak func(*Config)) *secretsEnv {
	t.Helper()
	if tweak == nil {
		tweak = func(*Config) {}
	}
	s := &secretsEnv{env: newEnvWith(t, tweak).asSiteAdmin()}
	t.Cleanup(func() {
		logMu.Lock()
		logs := s.logs.Bytes()
		logMu.Unlock()
		for _, v := range s.values {
			for _, form := range valueForms(v) {
				if bytes.Contains(logs, form) {
					t.Errorf("the server log contains the secret value %q", v)
				}
			}
		}
	})
	return s
}

// value remembers v as a secret value that no answer may contain.
func (s *secretsEnv) value(v string) string {
	s.values = append(s.values, v)
	return v
}

// valueForms are the ways a value could appear in an answer: as is, and
// escaped as a JSON string.
func valueForms(v string) [][]byte {
	forms := [][]byte{[]byte(v)}
	if q, err := json.Marshal(v); err == nil {
		forms = append(forms, q[1:len(q)-1])
	}
	return forms
}

func (s *secretsEnv) do(method, path string, body any, opts ...reqOpt) *resp {
	s.t.Helper()
	r := s.env.do(method, path, body, opts...)
	for _, v := range s.values {
		for _, form := range valueForms(v) {
			if bytes.Contains(r.body, form) {
				s.t.Fatalf("%s %s: the answer contains the secret value %q:\n%s", method, path, v, r.body)
			}
			for k, hs := range r.header {
				for _, h := range hs {
					if strings.Contains(h, string(form)) {
						s.t.Fatalf("%s %s: header %s contains the secret value %q", method, path, k, v)
					}
				}
			}
		}
	}
	return r
}

// create posts a secret and returns the answer's detail.
func (s *secretsEnv) create(body map[string]any) map[string]any {
	s.t.Helper()
	if v, ok := body["value"].(string); ok {
		s.value(v)
	}
	r := s.do("POST", "/api/v1/secrets", body).must(s.t, http.StatusCreated)
	d := r.detail()
	id, _ := d["secretId"].(string)
	if !strings.HasPrefix(id, "sec_") {
		s.t.Fatalf("no secretId: %s", r.body)
	}
	if loc := r.header.Get("Location"); loc != "/api/v1/secrets/"+id {
		s.t.Fatalf("Location %q, want /api/v1/secrets/%s", loc, id)
	}
	return d
}

// stored returns the secret as the store holds it.
func (s *secretsEnv) stored(id string) *store.Secret {
	s.t.Helper()
	x, err := s.st.GetSecret(context.Background(), id)
	if err != nil {
		s.t.Fatalf("get secret %s: %v", id, err)
	}
	return x
}

// opens checks that the stored ciphertext of id opens to want, only under
// id, and does not contain the value in clear.
func (s *secretsEnv) opens(id, want string) *store.Secret {
	s.t.Helper()
	x := s.stored(id)
	if x.KeyID != s.keyring.KeyID() {
		s.t.Errorf("key id %q, want the keyring's %q", x.KeyID, s.keyring.KeyID())
	}
	got, err := s.keyring.Open(id, x.Ciphertext, x.KeyID)
	if err != nil || string(got) != want {
		s.t.Fatalf("stored value of %s opens to %q, %v; want %q", id, got, err, want)
	}
	if bytes.Contains(x.Ciphertext, []byte(want)) {
		s.t.Errorf("the ciphertext of %s contains the value in clear", id)
	}
	// The secret id is the additional data: the ciphertext does not open
	// as another secret's.
	if v, err := s.keyring.Open("sec_bbbbbbbbbbbbbbbbbbbb", x.Ciphertext, x.KeyID); err == nil {
		s.t.Errorf("the ciphertext of %s opened under another id, to %q", id, v)
	}
	return x
}

func names(t *testing.T, r *resp) []string {
	t.Helper()
	var l struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
		Total    int `json:"total"`
		Page     int `json:"page"`
		PageSize int `json:"pageSize"`
	}
	r.into(t, &l)
	if l.Total != len(l.Items) || l.Page != 1 || l.PageSize != len(l.Items) {
		t.Fatalf("list total %d, page %d, pageSize %d for %d items", l.Total, l.Page, l.PageSize, len(l.Items))
	}
	out := []string{}
	for _, x := range l.Items {
		out = append(out, x.Name)
	}
	return out
}

func TestSecretsCreate(t *testing.T) {
	e := newSecretsEnv(t, nil)
	pid := e.createPipeline("app", nil)
	created := wire.Time(e.clock.Now())

	projValue := "proj-" + newID("v")
	d := e.create(map[string]any{"name": "DEPLOY_TOKEN", "value": projValue, "projectId": "proj_demo"})
	pidSecret := d["secretId"].(string)
	want := map[string]any{
		"secretId": pidSecret, "name": "DEPLOY_TOKEN", "scope": "project", "projectId": "proj_demo",
		"createdBy": "user_alice", "createdAt": created, "updatedAt": created,
	}
	if !sameJSON(d, want) {
		t.Errorf("created project secret:\n%v\nwant\n%v", d, want)
	}
	e.opens(pidSecret, projValue)

	// The same name at pipeline scope is another secret (it wins at run time).
	plValue := "pl-" + newID("v") + "\nsecond line"
	d = e.create(map[string]any{"name": "DEPLOY_TOKEN", "value": plValue, "pipelineId": pid})
	plSecret := d["secretId"].(string)
	want = map[string]any{
		"secretId": plSecret, "name": "DEPLOY_TOKEN", "scope": "pipeline", "pipelineId": pid,
		"createdBy": "user_alice", "createdAt": created, "updatedAt": created,
	}
	if !sameJSON(d, want) {
		t.Errorf("created pipeline secret:\n%v\nwant\n%v", d, want)
	}
	e.opens(plSecret, plValue)

	// GET one: the same object, never the value.
	for id, w := range map[string]string{pidSecret: "project", plSecret: "pipeline"} {
		got := e.do("GET", "/api/v1/secrets/"+id, nil).must(t, 200).detail()
		if got["secretId"] != id || got["scope"] != w || got["value"] != nil {
			t.Errorf("GET %s: %v", id, got)
		}
	}
	e.do("GET", "/api/v1/secrets/sec_cccccccccccccccccccc", nil).mustErr(t, 404, "secret sec_cccccccccccccccccccc not found")
	e.do("GET", "/api/v1/secrets/pl_cccccccccccccccccccc", nil).mustErr(t, 400, "path parameter secretId", "is not a secret id")
	e.do("GET", "/api/v1/secrets/"+pidSecret+"?reveal=true", nil).mustErr(t, 400, `unknown parameter "reveal"`)

	// The precedence the API documents: the resolver that opens a
	// pipeline's secrets at claim time gives the pipeline's value.
	vals, err := secret.Resolver{Store: e.st, Keyring: e.keyring}.ForPipeline(context.Background(), pid)
	if err != nil || len(vals) != 1 || vals["DEPLOY_TOKEN"] != plValue {
		t.Errorf("resolved secrets: %v, %v; want DEPLOY_TOKEN from the pipeline", len(vals), err)
	}
}

// sameJSON compares an answer's detail with want, both as JSON.
func sameJSON(got, want map[string]any) bool {
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(want)
	return bytes.Equal(a, b)
}

func TestSecretsList(t *testing.T) {
	e := newSecretsEnv(t, nil)
	p1 := e.createPipeline("one", nil)
	p2 := e.createPipeline("two", nil)
	e.create(map[string]any{"name": "B_TOKEN", "value": e.value("value-" + newID("b")), "projectId": "proj_demo"})
	e.create(map[string]any{"name": "A_TOKEN", "value": e.value("value-" + newID("a")), "projectId": "proj_demo"})
	e.create(map[string]any{"name": "OTHER", "value": e.value("value-" + newID("o")), "projectId": "proj_other"})
	e.create(map[string]any{"name": "P1_ONLY", "value": e.value("value-" + newID("p")), "pipelineId": p1})
	e.create(map[string]any{"name": "P2_ONLY", "value": e.value("value-" + newID("q")), "pipelineId": p2})

	list := func(query string) []string {
		t.Helper()
		return names(t, e.do("GET", "/api/v1/secrets"+query, nil).must(t, 200))
	}
	if got := list("?projectId=proj_demo"); strings.Join(got, ",") != "A_TOKEN,B_TOKEN" {
		t.Errorf("projectId=proj_demo: %v", got)
	}
	if got := list("?pipelineId=" + p1); strings.Join(got, ",") != "P1_ONLY" {
		t.Errorf("pipelineId=%s: %v", p1, got)
	}
	if got := list(""); len(got) != 5 {
		t.Errorf("every secret: %v", got)
	}
	if got := list("?pipelineId=pl_cccccccccccccccccccc"); len(got) != 0 {
		t.Errorf("unknown pipeline: %v", got)
	}
	e.do("GET", "/api/v1/secrets?projectId=proj_demo&pipelineId="+p1, nil).mustErr(t, 400, "give projectId or pipelineId, not both")
	e.do("GET", "/api/v1/secrets?pipelineId=", nil).mustErr(t, 400, "query parameter pipelineId", "is not a pipeline id")
	e.do("GET", "/api/v1/secrets?projectId=", nil).mustErr(t, 400, "query parameter projectId: required")
	e.do("GET", "/api/v1/secrets?projectId=../x", nil).mustErr(t, 400, "query parameter projectId")
	e.do("GET", "/api/v1/secrets?scope=project", nil).mustErr(t, 400, `unknown parameter "scope"`)
	e.do("GET", "/api/v1/secrets?projectId=a&projectId=b", nil).mustErr(t, 400, "given 2 times")
}

func TestSecretsUpdate(t *testing.T) {
	e := newSecretsEnv(t, nil)
	pid := e.createPipeline("app", nil)
	v1 := "first-" + newID("v")
	d := e.create(map[string]any{"name": "TOKEN", "value": v1, "projectId": "proj_demo"})
	id := d["secretId"].(string)
	path := "/api/v1/secrets/" + id
	before := e.opens(id, v1)

	// A new value is sealed again: another ciphertext, same name.
	e.clock.Advance(time.Minute)
	v2 := "second-" + newID("v")
	d = e.do("PUT", path, map[string]any{"value": e.value(v2)}).must(t, 200).detail()
	if d["name"] != "TOKEN" || d["scope"] != "project" || d["createdAt"] != wire.Time(before.CreatedAt) ||
		d["updatedAt"] != wire.Time(e.clock.Now()) || d["value"] != nil {
		t.Errorf("after PUT value: %v", d)
	}
	after := e.opens(id, v2)
	if bytes.Equal(after.Ciphertext, before.Ciphertext) {
		t.Error("PUT value kept the old ciphertext")
	}

	// A new name keeps the value.
	d = e.do("PUT", path, map[string]any{"name": "RENAMED"}).must(t, 200).detail()
	if d["name"] != "RENAMED" {
		t.Errorf("after PUT name: %v", d)
	}
	if x := e.opens(id, v2); !bytes.Equal(x.Ciphertext, after.Ciphertext) || x.Name != "RENAMED" {
		t.Errorf("PUT name changed the ciphertext or did not store the name (%q)", x.Name)
	}

	// Both at once.
	v3 := "third-" + newID("v")
	d = e.do("PUT", path, map[string]any{"name": "TOKEN", "value": e.value(v3)}).must(t, 200).detail()
	if d["name"] != "TOKEN" {
		t.Errorf("after PUT name and value: %v", d)
	}
	e.opens(id, v3)

	// A name another secret of the scope has: 409, nothing changes. The same
	// name in another scope is no clash.
	e.create(map[string]any{"name": "OTHER", "value": e.value("other-" + newID("v")), "projectId": "proj_demo"})
	e.create(map[string]any{"name": "ELSEWHERE", "value": e.value("else-" + newID("v")), "pipelineId": pid})
	e.do("PUT", path, map[string]any{"name": "OTHER"}).mustErr(t, 409, "body.name", "already has a secret named OTHER")
	if x := e.stored(id); x.Name != "TOKEN" {
		t.Errorf("name after a refused rename: %q", x.Name)
	}
	e.do("PUT", path, map[string]any{"name": "ELSEWHERE"}).must(t, 200)

	// The scope cannot change; an update says what it changes.
	e.do("PUT", path, map[string]any{"projectId": "proj_other"}).mustErr(t, 400, "body.projectId", "scope cannot change")
	e.do("PUT", path, map[string]any{"pipelineId": pid}).mustErr(t, 400, "body.pipelineId", "scope cannot change")
	e.do("PUT", path, map[string]any{}).mustErr(t, 400, "give name, value or both")
	e.do("PUT", path, rawBody("")).mustErr(t, 400, "body: empty")
	e.do("PUT", path, map[string]any{"name": "NO-DASHES"}).mustErr(t, 400, "body.name", "is not a secret name")
	e.do("PUT", path, map[string]any{"value": "Q9!"}).mustErr(t, 400, "body.value", "masked")
	e.do("PUT", path, map[string]any{"vaule": "x"}).mustErr(t, 400, `unknown field "vaule" (did you mean "value"?)`)
	e.opens(id, v3)

	e.do("PUT", "/api/v1/secrets/sec_cccccccccccccccccccc", map[string]any{"name": "X"}).mustErr(t, 404, "not found")
	e.do("PUT", "/api/v1/secrets/nope", map[string]any{"name": "X"}).mustErr(t, 400, "path parameter secretId")
}

func TestSecretsDelete(t *testing.T) {
	e := newSecretsEnv(t, nil)
	id := e.create(map[string]any{"name": "TOKEN", "value": "gone-" + newID("v"), "projectId": "proj_demo"})["secretId"].(string)
	r := e.do("DELETE", "/api/v1/secrets/"+id, nil).must(t, 200)
	if _, ok := r.env["detail"]; ok {
		t.Errorf("DELETE answer has a detail: %s", r.body)
	}
	e.do("GET", "/api/v1/secrets/"+id, nil).mustErr(t, 404, "secret "+id+" not found")
	e.do("DELETE", "/api/v1/secrets/"+id, nil).mustErr(t, 404, "not found")
	if _, err := e.st.GetSecret(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stored after DELETE: %v", err)
	}
	// The name is free again.
	e.create(map[string]any{"name": "TOKEN", "value": "again-" + newID("v"), "projectId": "proj_demo"})
	e.do("DELETE", "/api/v1/secrets/"+id+"?force=1", nil).mustErr(t, 400, `unknown parameter "force"`)
}

func TestSecretsValidation(t *testing.T) {
	e := newSecretsEnv(t, nil)
	pid := e.createPipeline("app", nil)
	good := func() map[string]any {
		return map[string]any{"name": "TOKEN", "value": e.value("good-" + newID("v")), "projectId": "proj_demo"}
	}
	with := func(k string, v any) map[string]any {
		b := good()
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
		return b
	}
	long := strings.Repeat("x", maxSecretBytes+1)
	tests := []struct {
		name   string
		body   any
		status int
		msg    []string
	}{
		{"name starting with a digit", with("name", "1TOKEN"), 400, []string{`body.name: "1TOKEN" is not a secret name`, "environment variable"}},
		{"name with a dash", with("name", "MY-TOKEN"), 400, []string{"body.name"}},
		{"name too long", with("name", strings.Repeat("A", 129)), 400, []string{"body.name", "at most 128"}},
		{"no name", with("name", nil), 400, []string{"body.name"}},
		{"value too short", with("value", e.value("Q9!")), 400, []string{"body.value: at least 4 bytes", "cannot be masked"}},
		{"value too long", with("value", long), 400, []string{"body.value: 65537 bytes, at most 64 KiB"}},
		{"no value", with("value", nil), 400, []string{"body.value: required"}},
		{"null value", with("value", json.RawMessage("null")), 400, []string{"body.value: at least 4 bytes"}},
		{"value not a string", with("value", 12345678), 400, []string{"body.value: must be a string"}},
		{"value of short lines", with("value", e.value("Q9!\nZ8?\nY7%")), 400, []string{"body.value: no line", "masked"}},
		{"value with NUL", with("value", e.value("nul\x00byte")), 400, []string{"body.value", "NUL"}},
		{"value with a lone surrogate", rawBody(`{"name":"TOKEN","projectId":"proj_demo","value":"ab\ud800cdef"}`), 400, []string{"body.value: must be valid UTF-8"}},
		{"value with a low surrogate first", rawBody(`{"name":"TOKEN","projectId":"proj_demo","value":"ab\udc00\ud800cdef"}`), 400, []string{"body.value: must be valid UTF-8"}},
		{"value of invalid UTF-8", rawBody("{\"name\":\"TOKEN\",\"projectId\":\"proj_demo\",\"value\":\"\xff\xfe\xfd\xfcQ9\"}"), 400, []string{"body.value: must be valid UTF-8"}},
		{"both scopes", with("pipelineId", pid), 400, []string{"give projectId or pipelineId, not both"}},
		{"no scope", with("projectId", nil), 400, []string{"give projectId", "or pipelineId"}},
		{"bad project", with("projectId", "../etc"), 400, []string{"body.projectId"}},
		{"unknown pipeline", map[string]any{"name": "TOKEN", "value": e.value("v-" + newID("x")), "pipelineId": "pl_cccccccccccccccccccc"}, 404, []string{"body.pipelineId: pipeline pl_cccccccccccccccccccc not found"}},
		{"unknown field", with("scope", "project"), 400, []string{`unknown field "scope"`}},
		{"not JSON", rawBody("name=TOKEN"), 400, []string{"body: malformed JSON"}},
		{"empty", rawBody(""), 400, []string{"body: empty"}},
	}
	parent := e.t
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t // the checks of do fail the subtest
			defer func() { e.t = parent }()
			e.do("POST", "/api/v1/secrets", tt.body).mustErr(t, tt.status, tt.msg...)
		})
	}
	if l, err := e.st.ListSecrets(context.Background(), store.SecretFilter{}); err != nil || len(l) != 0 {
		t.Fatalf("refused secrets were stored: %d, %v", len(l), err)
	}

	// Boundaries and what is accepted.
	e.create(map[string]any{"name": "_A1", "value": e.value("Q9!x"), "projectId": "proj_demo"})
	id := e.create(map[string]any{"name": "BIG", "value": strings.Repeat("y", maxSecretBytes), "projectId": "proj_demo"})["secretId"].(string)
	e.opens(id, strings.Repeat("y", maxSecretBytes))
	// A surrogate pair is a character like any other; short lines are fine
	// when another line can be masked.
	id = e.create(map[string]any{"name": "EMOJI", "value": e.value("\U0001F600 smile\nok"), "projectId": "proj_demo"})["secretId"].(string)
	e.opens(id, "\U0001F600 smile\nok")
	r := e.do("POST", "/api/v1/secrets", rawBody(`{"name":"ESCAPED","projectId":"proj_demo","value":"\ud83d\ude00 \"q\" \\u"}`)).must(t, 201)
	e.opens(r.detail()["secretId"].(string), "\U0001F600 \"q\" \\u")

	// A duplicate name in the scope.
	e.create(map[string]any{"name": "DUP", "value": e.value("dup-" + newID("v")), "pipelineId": pid})
	e.do("POST", "/api/v1/secrets", map[string]any{"name": "DUP", "value": e.value("dup-" + newID("w")), "pipelineId": pid}).
		mustErr(t, 409, "body.name: the pipeline "+pid+" already has a secret named DUP")

	// The content type and the body limit.
	e.do("POST", "/api/v1/secrets", rawBody(`{}`), withHeader("Content-Type", "text/plain")).mustErr(t, 415, "Content-Type")
	e.do("POST", "/api/v1/secrets?projectId=proj_demo", good()).mustErr(t, 400, `unknown parameter "projectId"`)
}

func TestSecretsBodyLimit(t *testing.T) {
	e := newSecretsEnv(t, func(c *Config) { c.MaxBodyBytes = 4 << 10 })
	v := e.value(strings.Repeat("z", 5<<10))
	e.do("POST", "/api/v1/secrets", map[string]any{"name": "BIG", "value": v, "projectId": "proj_demo"}).mustErr(t, 413, "larger than the limit of 4 KiB")
}

// TestSecretsWithoutKey: a server without a secret key refuses to create or
// change secrets with a 503 that says why.
func TestSecretsWithoutKey(t *testing.T) {
	e := newSecretsEnv(t, func(c *Config) { c.Secrets = nil })
	const msg = "secrets are not available: this server has no secret key configured"
	body := map[string]any{"name": "TOKEN", "value": e.value("no-key-" + newID("v")), "projectId": "proj_demo"}
	e.do("POST", "/api/v1/secrets", body).mustErr(t, 503, msg)
	e.do("PUT", "/api/v1/secrets/sec_cccccccccccccccccccc", map[string]any{"value": body["value"]}).mustErr(t, 503, msg)
	// What needs no key still answers.
	if got := names(t, e.do("GET", "/api/v1/secrets", nil).must(t, 200)); len(got) != 0 {
		t.Errorf("list: %v", got)
	}
	e.do("GET", "/api/v1/secrets/sec_cccccccccccccccccccc", nil).mustErr(t, 404, "not found")
	e.do("DELETE", "/api/v1/secrets/sec_cccccccccccccccccccc", nil).mustErr(t, 404, "not found")
}

// TestSecretsDeletedWithPipeline: a pipeline's secrets go with it; its
// project's stay.
func TestSecretsDeletedWithPipeline(t *testing.T) {
	e := newSecretsEnv(t, nil)
	pid := e.createPipeline("app", nil)
	plID := e.create(map[string]any{"name": "TOKEN", "value": "pl-" + newID("v"), "pipelineId": pid})["secretId"].(string)
	projID := e.create(map[string]any{"name": "TOKEN", "value": "proj-" + newID("v"), "projectId": "proj_demo"})["secretId"].(string)

	e.do("DELETE", "/api/v1/pipelines/"+pid, nil).must(t, 200)
	e.do("GET", "/api/v1/secrets/"+plID, nil).mustErr(t, 404, "secret "+plID+" not found")
	e.do("GET", "/api/v1/secrets/"+projID, nil).must(t, 200)
	if got := names(t, e.do("GET", "/api/v1/secrets?pipelineId="+pid, nil).must(t, 200)); len(got) != 0 {
		t.Errorf("secrets of the deleted pipeline: %v", got)
	}
	// And none can be created for it any more.
	e.do("POST", "/api/v1/secrets", map[string]any{"name": "TOKEN", "value": e.value("late-" + newID("v")), "pipelineId": pid}).
		mustErr(t, 404, "pipeline "+pid+" not found")
}

// TestSecretsReachTheJobMasked runs a pipeline through the real scheduler
// and an in-process agent on the local backend, as `runnel server` does: the
// step gets the pipeline's value of the secret it refers to in its env, and
// the log shows "***" instead, also when the step writes the value in two
// pieces. The value is neither in the stored job request nor in the run's
// variables.
func TestSecretsReachTheJobMasked(t *testing.T) {
	var sched *scheduler.Scheduler
	e := newSecretsEnv(t, func(c *Config) {
		sched = scheduler.New(scheduler.Options{Store: c.Store, Catalog: action.Builtins(),
			Secrets: secret.Resolver{Store: c.Store, Keyring: c.Secrets.(*secret.Keyring)}})
		c.Runs = schedulerControl{sched}
	})
	be, err := local.New(local.Options{Root: t.TempDir(), GracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() }) // before the store closes
	const agentID = "agent_embeddedsecrets0"
	if err := sched.RegisterLocalAgent(ctx, &store.Agent{ID: agentID, Kind: "embedded", Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	ag := &agent.Agent{ID: agentID, Capacity: 1, Source: scheduler.LocalSource{S: sched, AgentID: agentID},
		Executor: &engine.Executor{Backend: be, Actions: action.Builtins()}, FlushInterval: 20 * time.Millisecond}
	wg.Add(2)
	go func() { defer wg.Done(); _ = sched.Run(ctx) }()
	go func() { defer wg.Done(); _ = ag.Run(ctx) }()

	pid := e.createPipeline("deploy", map[string]any{"spec": map[string]any{
		"namespace": "demo.deploy", "version": "v1",
		"jobs": []any{map[string]any{"name": "deploy", "steps": []any{map[string]any{
			"name": "release",
			"env":  map[string]any{"TOKEN": "${{ secrets.DEPLOY_TOKEN }}"},
			// The value whole, then in two writes 200ms apart.
			"run": `echo "token=$TOKEN"
printf '%s' "$(printf '%s' "$TOKEN" | cut -c1-5)"; sleep 0.2; printf '%s\n' "$(printf '%s' "$TOKEN" | cut -c6-)"
echo "length=${#TOKEN}"`,
		}}}},
	}})
	projValue := "project-value-" + newID("")
	plValue := "pipeline-value-" + newID("")
	e.create(map[string]any{"name": "DEPLOY_TOKEN", "value": projValue, "projectId": "proj_demo"})
	e.create(map[string]any{"name": "DEPLOY_TOKEN", "value": plValue, "pipelineId": pid})

	rid := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(t, 200).detail()["runId"].(string)
	var run map[string]any
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		run = e.do("GET", "/api/v1/pipelines/runs/"+rid, nil).must(t, 200).detail()
		if st := run["status"]; st != "pending" && st != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not finish: %v", run)
		}
	}
	if run["status"] != "success" {
		t.Fatalf("run %v", run)
	}
	step := run["stages"].([]any)[0].(map[string]any)["jobs"].([]any)[0].(map[string]any)["steps"].([]any)[0].(map[string]any)
	r := e.do("GET", "/api/v1/pipelines/runs/"+rid+"/steps/"+step["stepRunId"].(string)+"/logs?format=text", nil).must(t, 200)
	want := "token=***\n***\nlength=" + itoa(len(plValue)) + "\n"
	if string(r.body) != want {
		t.Errorf("log:\n%s\nwant\n%s", r.body, want)
	}

	tree, err := e.st.GetRunTree(context.Background(), rid)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range tree.Jobs {
		for _, v := range []string{projValue, plValue} {
			if bytes.Contains(j.Request, []byte(v)) {
				t.Errorf("the stored request of job %s contains a secret value", j.ID)
			}
		}
	}
	if b, _ := json.Marshal(tree.Run.Variables); bytes.Contains(b, []byte(plValue)) {
		t.Error("the run's variables contain the secret value")
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestValidJSONText(t *testing.T) {
	for raw, want := range map[string]bool{
		`"plain"`:               true,
		`"\u00e9\n\t\\u\"x"`:    true,
		`"\\ud800"`:             true, // an escaped backslash, then text
		`"\ud83d\ude00"`:        true,
		`"\uD83D\uDE00"`:        true,
		`"\ud83d"`:              false,
		`"\ud83dx\ude00"`:       false,
		`"\ud83d\u0041"`:        false,
		`"\ude00\ud83d"`:        false,
		`"\\\ud800"`:            false,
		"\"\xc3\x28\"":          false,
		"\"caf\xc3\xa9\"":       true,
		`"\ud83d\ude00\ud83d"`:  false,
		`"end with pair\ud83d"`: false,
	} {
		if got := validJSONText([]byte(raw)); got != want {
			t.Errorf("validJSONText(%s) = %v, want %v", raw, got, want)
		}
	}
}

package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/imageapi"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
)

// testClock is a settable clock; tests move it instead of sleeping.
type testClock struct{ ns atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is one API server on a fresh SQLite database.
type env struct {
	t     testing.TB
	st    store.Store
	runs  *recordingRuns
	srv   *Server
	http  *httptest.Server
	clock *testClock
	logs  *bytes.Buffer
	// keyring seals the secrets (Config.Secrets, unless a tweak changed it).
	keyring *secret.Keyring
	// token is a valid user token (subject user_alice).
	token string
	// allow500 is set by the one test that makes the database fail on
	// purpose; every other 500 fails the test.
	allow500 bool
}

var logMu sync.Mutex

// syncBuffer guards the log buffer: handlers log from server goroutines.
type syncBuffer struct{ b *bytes.Buffer }

func (s syncBuffer) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return s.b.Write(p)
}

func newEnv(t testing.TB) *env {
	return newEnvWith(t, func(*Config) {})
}

func newEnvWith(t testing.TB, tweak func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"), sqlstore.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	clock := &testClock{}
	clock.Set(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	logs := &bytes.Buffer{}
	e := &env{t: t, st: st, clock: clock, logs: logs, keyring: newTestKeyring(t)}
	e.runs = &recordingRuns{st: st, now: clock.Now}
	cfg := Config{
		Store:   st,
		Runs:    e.runs,
		Secrets: e.keyring,
		Logger:  slog.New(slog.NewTextHandler(syncBuffer{logs}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Clock:   clock.Now,
	}
	tweak(&cfg)
	e.srv = New(cfg)
	e.http = httptest.NewServer(e.srv.Handler())
	t.Cleanup(e.http.Close)
	// Redirects (sign-in) are answers to check, not to follow.
	e.http.Client().CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	e.token = e.addToken("alice", "user_alice", "user", nil)
	return e
}

// userID is the id of the user with login login.
func (e *env) userID(login string) string {
	e.t.Helper()
	u, err := e.st.UserByLogin(context.Background(), login)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.ID
}

// asSiteAdmin makes the env's user (alice) a site admin, for tests of
// features other than access, which act on resources of projects nobody
// joined (access has its own tests: authz_test.go).
func (e *env) asSiteAdmin() *env {
	e.t.Helper()
	u, err := e.st.UserByLogin(context.Background(), "user_alice")
	if err != nil {
		e.t.Fatal(err)
	}
	u.Admin = true
	if err := e.st.UpdateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	return e
}

// newTestKeyring returns a keyring with a random key, as the server's.
func newTestKeyring(t testing.TB) *secret.Keyring {
	t.Helper()
	k, err := secret.NewKeyring(randomKey(t))
	if err != nil {
		t.Fatalf("keyring: %v", err)
	}
	return k
}

func randomKey(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// addToken stores a token and returns its secret value.
func (e *env) addToken(name, subject, role string, expires *time.Time) string {
	e.t.Helper()
	return e.storeToken(name, subject, role, expires, role == "user" || role == "admin")
}

// addUnlinkedToken stores a token of no user, as tokens were before users
// existed (an upgrade links them all; the API still accepts one).
func (e *env) addUnlinkedToken(name, subject, role string) string {
	e.t.Helper()
	return e.storeToken(name, subject, role, nil, false)
}

func (e *env) storeToken(name, subject, role string, expires *time.Time, linked bool) string {
	e.t.Helper()
	secret := "rn_" + newID("") + newID("")
	sum := sha256.Sum256([]byte(secret))
	// A user's or an admin's token belongs to a user of its subject, as
	// every such token does since users exist.
	userID := ""
	if linked {
		u, err := e.st.UserByLogin(context.Background(), subject)
		if errors.Is(err, runnel.ErrNotFound) {
			u = &store.User{ID: newID("usr_"), Login: subject, Admin: role == "admin", CreatedAt: e.clock.Now()}
			err = e.st.CreateUser(context.Background(), u)
		}
		if err != nil {
			e.t.Fatalf("user %s: %v", subject, err)
		}
		userID = u.ID
	}
	err := e.st.CreateToken(context.Background(), &store.APIToken{
		ID: newID("tok_"), Name: name, Subject: subject, Role: role, Hash: sum[:], UserID: userID,
		CreatedAt: e.clock.Now(), ExpiresAt: expires,
	})
	if err != nil {
		e.t.Fatalf("create token: %v", err)
	}
	return secret
}

// resp is an answer, with the envelope decoded when it is JSON.
type resp struct {
	status int
	header http.Header
	body   []byte
	env    map[string]any
}

// detail returns the envelope's detail as a map.
func (r *resp) detail() map[string]any {
	d, _ := r.env["detail"].(map[string]any)
	return d
}

func (r *resp) errMsg() string {
	if errs, ok := r.env["errors"].([]any); ok && len(errs) > 0 && r.env["errMsg"] == nil {
		m, _ := errs[0].(map[string]any)["message"].(string)
		return m
	}
	m, _ := r.env["errMsg"].(string)
	return m
}

// checkSeedErrors asserts the seed API's error body on its error answers.
func checkSeedErrors(t testing.TB, method, path string, r *resp) {
	t.Helper()
	if r.status < 400 {
		if r.env != nil && r.env["errors"] != nil {
			t.Fatalf("%s %s: success with errors: %s", method, path, r.body)
		}
		return
	}
	errs, _ := r.env["errors"].([]any)
	if len(errs) != 1 || r.env["errMsg"] != nil {
		t.Fatalf("%s %s: bad seed error body: %s", method, path, r.body)
	}
	first, _ := errs[0].(map[string]any)
	if c, _ := first["code"].(string); c == "" {
		t.Fatalf("%s %s: seed error without code: %s", method, path, r.body)
	}
	if m, _ := first["message"].(string); m == "" {
		t.Fatalf("%s %s: seed error without message: %s", method, path, r.body)
	}
}

// into decodes the detail into v.
func (r *resp) into(t testing.TB, v any) {
	t.Helper()
	var w struct {
		Detail json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &w); err != nil {
		t.Fatalf("decode envelope: %v\n%s", err, r.body)
	}
	if err := json.Unmarshal(w.Detail, v); err != nil {
		t.Fatalf("decode detail: %v\n%s", err, r.body)
	}
}

// reqOpt adjusts a request.
type reqOpt func(*http.Request)

func withToken(tok string) reqOpt {
	return func(r *http.Request) {
		if tok == "" {
			r.Header.Del("Authorization")
		} else {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
	}
}

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

// rawBody marks a body sent as is.
type rawBody string

// do sends a request with the user token. body is marshalled unless it is a
// rawBody (sent verbatim) or nil. Every answer is checked: never a 500 unless
// allowed, always an envelope (except documented raw answers), and the JSON
// validates against the OpenAPI document.
func (e *env) do(method, path string, body any, opts ...reqOpt) *resp {
	e.t.Helper()
	r, err := e.send(method, path, body, opts...)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	e.check(method, path, r)
	return r
}

// send only sends (it is safe in goroutines other than the test's); check
// the answer with check afterwards, on the test goroutine.
func (e *env) send(method, path string, body any, opts ...reqOpt) (*resp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case rawBody:
		rd = strings.NewReader(string(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	for _, o := range opts {
		o(req)
	}
	res, err := e.http.Client().Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	return &resp{status: res.StatusCode, header: res.Header, body: data}, nil
}

// check applies do's checks to an answer and decodes its envelope.
func (e *env) check(method, path string, r *resp) {
	e.t.Helper()
	if r.status >= 500 && !e.allow500 && r.status != http.StatusServiceUnavailable {
		logMu.Lock()
		logs := e.logs.String()
		logMu.Unlock()
		e.t.Fatalf("%s %s: status %d: %s\nserver log:\n%s", method, path, r.status, r.body, logs)
	}
	ct := r.header.Get("Content-Type")
	if (r.status == http.StatusNoContent || r.status == http.StatusFound) && len(r.body) == 0 {
		if r.status == http.StatusFound {
			if r.header.Get("Location") == "" {
				e.t.Fatalf("%s %s: a redirect without a Location", method, path)
			}
			if _, op := findOperation(openAPI(e.t), method, path); op == nil || op["responses"].(map[string]any)["302"] == nil {
				e.t.Fatalf("%s %s: a redirect the OpenAPI document does not describe", method, path)
			}
		}
		return
	}
	if strings.HasPrefix(ct, "application/json") && method != http.MethodHead {
		var v any
		if err := json.Unmarshal(r.body, &v); err != nil {
			e.t.Fatalf("%s %s: answer is not JSON: %v\n%s", method, path, err, r.body)
		}
		r.env, _ = v.(map[string]any)
		switch {
		case imageapi.SeedPath(strings.SplitN(path, "?", 2)[0]):
			// The seed's image API: no envelope; errors are {"errors":[…]}.
			checkSeedErrors(e.t, method, path, r)
		case !strings.HasSuffix(strings.SplitN(path, "?", 2)[0], "/openapi.json"):
			checkEnvelope(e.t, method, path, r)
		}
		validateResponse(e.t, method, path, r)
	} else if method != http.MethodHead && !strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "application/yaml") {
		e.t.Fatalf("%s %s: unexpected Content-Type %q", method, path, ct)
	}
}

// parallel sends n copies of a request at once and returns the checked
// answers.
func (e *env) parallel(n int, method, path string, body any) []*resp {
	e.t.Helper()
	out := make([]*resp, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = e.send(method, path, body)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			e.t.Fatalf("%s %s: %v", method, path, errs[i])
		}
		e.check(method, path, out[i])
	}
	return out
}

// checkEnvelope asserts the seed's envelope rules.
func checkEnvelope(t testing.TB, method, path string, r *resp) {
	t.Helper()
	ts, ok := r.env["timestamp"].(float64)
	if !ok || ts <= 0 {
		t.Fatalf("%s %s: envelope without timestamp: %s", method, path, r.body)
	}
	code, _ := r.env["code"].(float64)
	if r.status < 400 {
		if code != 0 || r.env["msg"] != "success" || r.env["errMsg"] != nil {
			t.Fatalf("%s %s: bad success envelope: %s", method, path, r.body)
		}
		return
	}
	if int(code) != r.status {
		t.Fatalf("%s %s: envelope code %v but status %d", method, path, code, r.status)
	}
	msg, _ := r.env["errMsg"].(string)
	wantPath := strings.SplitN(path, "?", 2)[0]
	if msg == "" || r.env["path"] != wantPath || r.env["msg"] != nil || r.env["detail"] != nil {
		t.Fatalf("%s %s: bad error envelope (want errMsg, path %q): %s", method, path, wantPath, r.body)
	}
}

// must fails unless the answer has the status; it returns r for chaining.
func (r *resp) must(t testing.TB, status int) *resp {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// mustErr checks an error answer's status and that its message contains
// every fragment.
func (r *resp) mustErr(t testing.TB, status int, fragments ...string) *resp {
	t.Helper()
	r.must(t, status)
	for _, f := range fragments {
		if !strings.Contains(r.errMsg(), f) {
			t.Fatalf("errMsg %q does not contain %q", r.errMsg(), f)
		}
	}
	return r
}

// A valid definition in the seed's shape.
var goodSpec = map[string]any{
	"namespace": "demo.pipeline",
	"version":   "v1",
	"jobs": []any{map[string]any{
		"name": "build",
		"steps": []any{
			map[string]any{"name": "compile", "uses": "actions/go-build@v1", "args": map[string]any{"go_version": "1.25"}},
			map[string]any{"name": "test", "run": "go test ./..."},
		},
	}},
}

func specWithStep(run string) map[string]any {
	return map[string]any{
		"namespace": "demo.pipeline", "version": "v1",
		"jobs": []any{map[string]any{"name": "build", "steps": []any{map[string]any{"name": "s", "run": run}}}},
	}
}

// createPipeline creates a pipeline and returns its id.
func (e *env) createPipeline(name string, extra map[string]any) string {
	e.t.Helper()
	body := map[string]any{"projectId": "proj_demo", "name": name}
	for k, v := range extra {
		body[k] = v
	}
	r := e.do("POST", "/api/v1/pipelines", body).must(e.t, http.StatusCreated)
	id, _ := r.detail()["pipelineId"].(string)
	if id == "" {
		e.t.Fatalf("no pipelineId: %s", r.body)
	}
	return id
}

// saveSpec saves a definition and returns the answer's detail.
func (e *env) saveSpec(pid string, body map[string]any) map[string]any {
	e.t.Helper()
	return e.do("POST", "/api/v1/pipelines/"+pid+"/spec/save", body).must(e.t, http.StatusOK).detail()
}

// recordingRuns is a TEST DOUBLE of RunControl, standing in for the scheduler
// (package scheduler tests its own behaviour). It records calls and works
// through the real store: Trigger creates a run with CreateRun (whose
// requestId idempotency is the store's), and stop/pause/resume change the run
// in UpdateRunTx and append to the real timeline, returning ErrConflict with
// the current status on an illegal transition, as the contract says.
type recordingRuns struct {
	st  store.Store
	now func() time.Time

	mu    sync.Mutex
	calls []string
	// triggerErr, when set, is returned by Trigger.
	triggerErr error
}

func (f *recordingRuns) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *recordingRuns) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *recordingRuns) Trigger(ctx context.Context, pipelineID string, req runnel.TriggerRequest) (*store.Run, bool, error) {
	f.record("trigger %s by=%s req=%s type=%s vars=%v", pipelineID, req.TriggeredBy, req.RequestID, req.TriggerType, req.Variables)
	if f.triggerErr != nil {
		return nil, false, f.triggerErr
	}
	p, err := f.st.GetPipeline(ctx, pipelineID)
	if err != nil {
		return nil, false, err
	}
	now := f.now()
	runID := newID("run_")
	jobA, jobB, jobC := newID("jr_"), newID("jr_"), newID("jr_")
	code0 := 0
	nr := &store.NewRun{
		Run: &store.Run{
			ID: runID, PipelineID: pipelineID, Status: "running", TriggerType: req.TriggerType,
			TriggeredBy: req.TriggeredBy, TriggerUserID: req.TriggerUserID, RequestID: req.RequestID, Variables: req.Variables,
			SpecVersion: p.HeadVersion, CreatedAt: now, StartedAt: &now,
		},
		Jobs: []*store.JobRun{
			{ID: jobA, RunID: runID, Key: "build/compile", Name: "compile", Stage: "build", StageIndex: 0, Index: 0, Status: "success", Attempt: 1, StartedAt: &now, EndedAt: &now},
			{ID: jobB, RunID: runID, Key: "build/lint", Name: "lint", Stage: "build", StageIndex: 0, Index: 1, Status: "running", Attempt: 1, AgentID: "agent-1", StartedAt: &now},
			{ID: jobC, RunID: runID, Key: "deploy/ship", Name: "ship", Stage: "deploy", StageIndex: 1, Index: 2, Status: "pending"},
		},
		Steps: map[string][]*store.StepRun{
			jobA: {
				{ID: newID("sr_"), JobRunID: jobA, Index: 0, Name: "checkout", Uses: "actions/git-checkout@v1", Status: "success", ExitCode: &code0, StartedAt: &now, EndedAt: &now},
				{ID: newID("sr_"), JobRunID: jobA, Index: 1, Name: "build", Run: "go build ./...", Status: "success", ExitCode: &code0, StartedAt: &now, EndedAt: &now},
			},
			jobB: {{ID: newID("sr_"), JobRunID: jobB, Index: 0, Name: "vet", Run: "go vet ./...", Status: "running", StartedAt: &now}},
			jobC: {{ID: newID("sr_"), JobRunID: jobC, Index: 0, Name: "ship", Run: "./ship.sh", Status: "pending"}},
		},
	}
	return f.st.CreateRun(ctx, nr)
}

func (f *recordingRuns) transition(ctx context.Context, action, runID, operator, reason string, from []string, to string) (*store.Run, error) {
	f.record("%s %s op=%s reason=%s", action, runID, operator, reason)
	var out *store.Run
	err := f.st.UpdateRunTx(ctx, runID, func(tx store.RunTx) error {
		tree, err := tx.Tree()
		if err != nil {
			return err
		}
		run := tree.Run
		ok := false
		for _, s := range from {
			ok = ok || run.Status == runnel.RunStatus(s)
		}
		if !ok {
			return fmt.Errorf("run %s is %s: %w", runID, run.Status, store.ErrConflict)
		}
		run.Status = runnel.RunStatus(to)
		if to == "cancelled" {
			now := f.now()
			run.EndedAt = &now
		}
		if err := tx.UpdateRun(run); err != nil {
			return err
		}
		if err := tx.AppendTimeline(&store.TimelineEntry{RunID: runID, Time: f.now(), Action: action, Operator: operator, Reason: reason}); err != nil {
			return err
		}
		out = run
		return tx.SetPipelineStatus(run)
	})
	return out, err
}

func (f *recordingRuns) Stop(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	return f.transition(ctx, "stop", runID, operator, reason, []string{"pending", "running", "paused"}, "cancelled")
}

func (f *recordingRuns) Pause(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	return f.transition(ctx, "paused", runID, operator, reason, []string{"pending", "running"}, "paused")
}

func (f *recordingRuns) Resume(ctx context.Context, runID, operator, reason string) (*store.Run, error) {
	return f.transition(ctx, "resumed", runID, operator, reason, []string{"paused"}, "running")
}

// --- OpenAPI response validation ---

var (
	docOnce sync.Once
	docData map[string]any
)

func openAPI(t testing.TB) map[string]any {
	t.Helper()
	docOnce.Do(func() {
		if err := json.Unmarshal(openAPIDoc, &docData); err != nil {
			panic(fmt.Sprintf("openapi.json is not JSON: %v", err))
		}
	})
	return docData
}

// findOperation returns the documented operation for a request path.
func findOperation(doc map[string]any, method, path string) (tmpl string, op map[string]any) {
	path = strings.SplitN(path, "?", 2)[0]
	paths := doc["paths"].(map[string]any)
	got := strings.Split(path, "/")
	best := -1
	for p, item := range paths {
		segs := strings.Split(p, "/")
		if len(segs) != len(got) {
			continue
		}
		lits, ok := 0, true
		for i, s := range segs {
			if strings.HasPrefix(s, "{") {
				continue
			}
			if s != got[i] {
				ok = false
				break
			}
			lits++
		}
		if !ok || lits <= best {
			continue
		}
		o, found := item.(map[string]any)[strings.ToLower(method)].(map[string]any)
		if !found {
			continue
		}
		best, tmpl, op = lits, p, o
	}
	return tmpl, op
}

// validateResponse checks a JSON answer against the documented response
// schema of its operation and status. Answers to paths without a documented
// operation (404/405 for unknown routes, 400 for bad paths) must be error
// envelopes.
func validateResponse(t testing.TB, method, path string, r *resp) {
	t.Helper()
	doc := openAPI(t)
	var schema any
	_, op := findOperation(doc, method, path)
	if op == nil {
		if r.status < 400 {
			t.Fatalf("%s %s: success on an undocumented operation", method, path)
		}
		schema = map[string]any{"$ref": "#/components/schemas/ErrorEnvelope"}
		if imageapi.SeedPath(strings.SplitN(path, "?", 2)[0]) {
			schema = map[string]any{"$ref": "#/components/schemas/SeedErrors"}
		}
	} else {
		responses := op["responses"].(map[string]any)
		rs, ok := responses[fmt.Sprint(r.status)]
		if !ok {
			t.Fatalf("%s %s: status %d is not documented for this operation: %s", method, path, r.status, r.body)
		}
		rs = resolve(doc, rs)
		content := rs.(map[string]any)["content"].(map[string]any)
		schema = content["application/json"].(map[string]any)["schema"]
	}
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if err := checkSchema(doc, schema, v, "$"); err != nil {
		t.Fatalf("%s %s: answer does not match the OpenAPI document: %v\n%s", method, path, err, r.body)
	}
}

func resolve(doc map[string]any, s any) any {
	for {
		m, ok := s.(map[string]any)
		if !ok {
			return s
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return s
		}
		var cur any = doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		s = cur
	}
}

// checkSchema is a small JSON Schema checker for the subset the document
// uses: $ref, type (with "null"), properties, required, additionalProperties,
// items, enum, pattern.
func checkSchema(doc map[string]any, s any, v any, at string) error {
	sm, ok := resolve(doc, s).(map[string]any)
	if !ok {
		return fmt.Errorf("%s: schema is not an object", at)
	}
	if types, ok := sm["type"]; ok {
		var list []string
		switch tt := types.(type) {
		case string:
			list = []string{tt}
		case []any:
			for _, x := range tt {
				list = append(list, x.(string))
			}
		}
		if !typeMatches(list, v) {
			return fmt.Errorf("%s: %T does not match type %v", at, v, list)
		}
	}
	if enum, ok := sm["enum"].([]any); ok && v != nil {
		found := false
		for _, x := range enum {
			found = found || x == v
		}
		if !found {
			return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
		}
	}
	if pat, ok := sm["pattern"].(string); ok {
		if str, ok := v.(string); ok && !regexp.MustCompile(pat).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", at, str, pat)
		}
	}
	switch val := v.(type) {
	case map[string]any:
		props, _ := sm["properties"].(map[string]any)
		for _, req := range asStrings(sm["required"]) {
			if _, ok := val[req]; !ok {
				return fmt.Errorf("%s: required property %q missing", at, req)
			}
		}
		for k, x := range val {
			if ps, ok := props[k]; ok {
				if err := checkSchema(doc, ps, x, at+"."+k); err != nil {
					return err
				}
				continue
			}
			switch ap := sm["additionalProperties"].(type) {
			case bool:
				if !ap {
					return fmt.Errorf("%s: property %q is not documented", at, k)
				}
			case map[string]any:
				if err := checkSchema(doc, ap, x, at+"."+k); err != nil {
					return err
				}
			}
		}
	case []any:
		if items, ok := sm["items"]; ok {
			for i, x := range val {
				if err := checkSchema(doc, items, x, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func typeMatches(types []string, v any) bool {
	for _, t := range types {
		switch t {
		case "null":
			if v == nil {
				return true
			}
		case "object":
			if _, ok := v.(map[string]any); ok {
				return true
			}
		case "array":
			if _, ok := v.([]any); ok {
				return true
			}
		case "string":
			if _, ok := v.(string); ok {
				return true
			}
		case "boolean":
			if _, ok := v.(bool); ok {
				return true
			}
		case "integer":
			if f, ok := v.(float64); ok && f == float64(int64(f)) {
				return true
			}
		case "number":
			if _, ok := v.(float64); ok {
				return true
			}
		}
	}
	return false
}

func asStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			out = append(out, x.(string))
		}
	}
	return out
}

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/fleet"
	"github.com/runnel-ci/runnel/internal/imageapi"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/store"
)

// fuzzSeeds are hostile and ordinary inputs; they run in every `go test`.
var fuzzSeeds = []struct{ body, query string }{
	{`{"projectId":"proj_xxx","name":"build-main","metadata":{"owner":"devops"}}`, "page=1&pageSize=20"},
	{`{"spec":{"namespace":"a","jobs":[{"name":"b","steps":[{"run":"x"}]}]},"format":"yaml","requestId":"r-1"}`, "pageSize=500"},
	{`{"variables":{"env":"prod"},"triggeredBy":"u","requestId":"t-1"}`, "status=running&page=2"},
	{`{"reason":"manual operation","operator":"user_xxx"}`, "startTime=0&endTime=253402300799&offset=0&limit=10000&format=text"},
	{`{"nmae":"x"}`, "pagesize=1"},
	{`{"name":"a","name":"b"}`, "page=1&page=2"},
	{`{"content":"namespace: a"}`, "name=%zz"},
	{`[`, "page=-1"},
	{`{"a":` + strings.Repeat("[", 200), "pageSize=1e3"},
	{"{\"name\":\"\x00\"}", "projectId=..%2F..&name=%00"},
	{`{"metadata":{"a":1e999}}`, "page=99999999999999999999"},
	{`{"spec":"namespace: a"}`, ";;&&=="},
	{`{}{}`, "page"},
	{"\xef\xbb\xbf{}", "version=1"},
	{`null`, ""},
	{`{"variables":{"":"x"}}`, "format=html"},
	{`{"labels":{"pool":"a","team/infra":""},"disabled":true}`, "status=online"},
	{`{"labels":null,"disabled":null}`, "status="},
	{`{"labels":{"bad key":"a b","pool":7}}`, "status=busy&status=online"},
	{`{"name":"pool a","expiresAt":"2026-12-31T23:59:59Z","maxUses":5}`, ""},
	{`{"expiresAt":"2026-03-02T12:30:00+02:00","maxUses":-1}`, "status=disabled"},
	{`{"name":"DEPLOY_TOKEN","value":"s3cr3t-value","projectId":"proj_demo"}`, "projectId=proj_demo"},
	{`{"name":"T","value":"abc","pipelineId":"pl_aaaaaaaaaaaaaaaaaaaa","projectId":"p"}`, "pipelineId=pl_aaaaaaaaaaaaaaaaaaaa&projectId=p"},
	{`{"name":"1BAD","value":"a\nb\nc\nd"}`, "pipelineId="},
	{"{\"value\":\"\xff\xfe\xfd\xfc\",\"name\":\"X\"}", "pipelineId=..%2F"},
	{`{"value":"ab\ud800cd","name":"X_1"}`, ""},
	{`{"value":"\ud83d\ude00\u0000xyz"}`, ""},
	{`{"name":"TOKEN","projectId":"proj_demo"}`, ""},
	{`{"value":null,"name":null}`, ""},
	{`{"name":"github","kind":"github","accessToken":"ghp_0123456789abcdef","projectId":"proj_demo"}`, "projectId=proj_demo"},
	{`{"name":"forge","kind":"gitea","host":"git.example.com:3000","username":"ci-bot","accessToken":"tok-0123"}`, "projectId="},
	{"{\"name\":\"deploy key\",\"kind\":\"ssh\",\"privateKey\":\"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\\n-----END OPENSSH PRIVATE KEY-----\\n\"}", ""},
	{`{"name":"k","kind":"ssh","privateKey":"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----"}`, ""},
	{`{"name":"x","kind":"svn","host":"https://git.example.com/a","username":"a b","accessToken":"a\nb c"}`, "projectId=../x"},
	{`{"kind":"gitlab","accessToken":"ab\ud800cd","privateKey":"x"}`, ""},
	{"{\"kind\":\"basic\",\"host\":\"h:99999\",\"accessToken\":\"\xff\xfe\xfd\xfc\",\"name\":\"n\"}", ""},
	{`{"name":"n","kind":"ssh","privateKey":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 me@host","accessToken":"\u0000abc"}`, ""},
	{`{"host":"","username":"","projectId":"","accessToken":null}`, ""},
}

// FuzzDecode feeds arbitrary bodies and query strings to the request
// decoding of every endpoint: it must never panic, and every rejection must
// be a 4xx with a message.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s.body), s.query)
	}
	bodies := []func() (any, apikit.DecodeOptions){
		func() (any, apikit.DecodeOptions) {
			return &createPipelineBody{}, apikit.DecodeOptions{Rejected: createRejected}
		},
		func() (any, apikit.DecodeOptions) {
			return &pipelineBody{}, apikit.DecodeOptions{Rejected: updateRejected}
		},
		func() (any, apikit.DecodeOptions) { return &specBody{}, apikit.DecodeOptions{Rejected: specRejected} },
		func() (any, apikit.DecodeOptions) { return &saveBody{}, apikit.DecodeOptions{Rejected: specRejected} },
		func() (any, apikit.DecodeOptions) { return &triggerBody{}, apikit.DecodeOptions{Optional: true} },
		func() (any, apikit.DecodeOptions) { return &controlBody{}, apikit.DecodeOptions{Optional: true} },
		func() (any, apikit.DecodeOptions) { return &agentBody{}, apikit.DecodeOptions{} },
		func() (any, apikit.DecodeOptions) {
			return &registrationTokenBody{}, apikit.DecodeOptions{Optional: true}
		},
		func() (any, apikit.DecodeOptions) { return &secretBody{}, apikit.DecodeOptions{} },
		func() (any, apikit.DecodeOptions) {
			return &secretUpdateBody{}, apikit.DecodeOptions{Rejected: secretUpdateRejected}
		},
		func() (any, apikit.DecodeOptions) { return &credentialBody{}, apikit.DecodeOptions{} },
		func() (any, apikit.DecodeOptions) {
			return &credentialUpdateBody{}, apikit.DecodeOptions{Rejected: credentialUpdateRejected}
		},
	}
	f.Fuzz(func(t *testing.T, body []byte, rawQuery string) {
		for _, mk := range bodies {
			dst, opts := mk()
			present, err := apikit.Decode(body, dst, opts)
			check4xx(t, "decodeJSON", err)
			if err != nil {
				continue
			}
			// What decodes then goes through the field checks.
			switch b := dst.(type) {
			case *createPipelineBody:
				check4xx(t, "checkPipelineFields", checkPipelineFields(&b.Fields, func(string) bool { return true }))
				check4xx(t, "checkPrincipal", check.Principal("body.createdBy", b.CreatedBy))
				if !isNull(b.Spec) {
					check4xx(t, "checkSpecObject", checkSpecObject(b.Spec))
				}
			case *saveBody:
				_, err := checkFormat(b.Format)
				check4xx(t, "checkFormat", err)
				check4xx(t, "checkRequestID", check.RequestID("body.requestId", b.RequestID))
				check4xx(t, "checkSpecObject", checkSpecObject(b.Spec))
			case *controlBody:
				check4xx(t, "checkText", check.Text("body.reason", b.Reason, 1000, true))
			case *agentBody:
				if b.Labels != nil {
					_, err := fleet.CheckLabels(*b.Labels)
					check4xx(t, "checkAgentLabels", err)
				}
			case *secretBody:
				check4xx(t, "checkSecretName", secret.CheckSecretName(b.Name))
				check4xx(t, "checkSecretValue", secret.CheckSecretValue(b.Value, rawField(body, "value")))
			case *secretUpdateBody:
				check4xx(t, "checkSecretValue", secret.CheckSecretValue(b.Value, rawField(body, "value")))
			case *credentialBody:
				check4xx(t, "checkEnum", check.Enum("body.kind", b.Kind, secret.CredentialKinds...))
				f := secret.CredentialFields{Kind: b.Kind, Host: b.Host, Username: b.Username, ProjectID: b.ProjectID}
				check4xx(t, "credentialFields.check", f.Check())
				for _, creating := range []bool{true, false} {
					v, err := secret.CheckCredentialSecret(b.Kind, secret.CredentialSecret{AccessToken: b.AccessToken, PrivateKey: b.PrivateKey,
						AccessTokenJSON: rawField(body, "accessToken"), PrivateKeyJSON: rawField(body, "privateKey")}, presence(present), creating)
					check4xx(t, "checkCredentialSecret", err)
					if err == nil && v != "" && (!utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 || len(v) < secret.MinTokenBytes) {
						t.Fatalf("credential material %q accepted", v)
					}
				}
			case *registrationTokenBody:
				exp, err := fleet.TokenRequest{Name: b.Name, ExpiresAt: b.ExpiresAt, MaxUses: b.MaxUses}.Check(nowForTest())
				check4xx(t, "registrationTokenBody.check", err)
				if err == nil && exp != nil && !exp.After(nowForTest()) {
					t.Fatalf("expiry %v accepted, not after now", exp)
				}
			}
		}
		q, err := apikit.ParseQuery(rawQuery, "projectId", "pipelineId", "name", "page", "pageSize", "status", "startTime", "endTime", "offset", "limit", "format", "version")
		check4xx(t, "parseQuery", err)
		if err == nil {
			pg, err := q.Pagination()
			check4xx(t, "pagination", err)
			if err == nil && (pg.Number < 1 || pg.Size < 1 || pg.Size > apikit.MaxPageSize || pg.Offset() < 0) {
				t.Fatalf("pagination out of range: %+v", pg)
			}
			_, err = q.Int("startTime", -1, 0, apikit.MaxUnix)
			check4xx(t, "intParam", err)
		}
		check4xx(t, "checkPath", apikit.CheckPath("/"+rawQuery))
	})
}

func check4xx(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	// As the client gets it: an *apikit.Error, or a domain error mapped.
	ae := apikit.MapError(err)
	if ae.Status < 400 || ae.Status >= 500 || ae.Msg == "" {
		t.Fatalf("%s: %v is not a 4xx answer with a message", what, err)
	}
	if ae.Status == http.StatusBadRequest && !strings.Contains(ae.Msg, ":") {
		t.Fatalf("%s: message %q does not say where", what, ae.Msg)
	}
}

// FuzzRequest sends arbitrary requests through the whole handler on the
// real store and a real keyring, with real ids substituted for {p}, {r},
// {s}, {a} (an agent), {t} (a registration token), {k} (a secret) and {c}
// (a credential), under
// an admin token: no request may
// produce a 5xx or a panic (the recover middleware would turn a panic into a
// 500, which fails here), and every answer is an envelope.
func FuzzRequest(f *testing.F) {
	// Hundreds of thousands of requests: no access log kept in memory.
	e := newEnvWith(f, func(c *Config) {
		c.Logger = slog.New(slog.DiscardHandler)
		c.Agents = &onlineWithin{window: 30 * time.Second}
		kr, err := secret.NewKeyring(randomKey(f))
		if err != nil {
			f.Fatal(err)
		}
		c.Secrets = kr
		withImages(c)
	})
	// An admin token, so that the admin-only routes get past the role check
	// to their decoding (a user token is refused before it); the fuzzed
	// requests are alice's, a site admin too, so that they reach the
	// decoders of every route.
	admin := e.addToken("root", "admin_root", "admin", nil)
	e.asSiteAdmin()
	pid := e.createPipeline("fuzz", map[string]any{"spec": goodSpec})
	rid := e.do("POST", "/api/v1/pipelines/"+pid+"/trigger", nil).must(f, 200).detail()["runId"].(string)
	tree, err := e.st.GetRunTree(context.Background(), rid)
	if err != nil {
		f.Fatal(err)
	}
	sid := tree.Steps[tree.Jobs[0].ID][0].ID
	aid := newID("agent_")
	if err := e.st.CreateAgent(context.Background(), &store.Agent{ID: aid, Name: "fuzz", Kind: "remote", Capacity: 1, CreatedAt: e.clock.Now()}); err != nil {
		f.Fatal(err)
	}
	tid := e.do("POST", "/api/v1/registration-tokens", nil, withToken(admin)).must(f, 201).detail()["tokenId"].(string)
	cid := e.do("POST", "/api/v1/credentials", map[string]any{"name": "fuzz", "kind": "github", "accessToken": "ghp_fuzz0123456789"}).
		must(f, 201).detail()["credentialId"].(string)
	kid := e.do("POST", "/api/v1/secrets", map[string]any{"name": "FUZZ_TOKEN", "value": "fuzz-secret-value", "pipelineId": pid}).
		must(f, 201).detail()["secretId"].(string)
	ids := strings.NewReplacer("{p}", pid, "{r}", rid, "{s}", sid, "{a}", aid, "{t}", tid, "{k}", kid, "{c}", cid)

	for _, rt := range e.srv.routes() {
		path := strings.NewReplacer("{pipelineId}", "{p}", "{runId}", "{r}", "{stepRunId}", "{s}", "{agentId}", "{a}", "{tokenId}", "{t}", "{secretId}", "{k}", "{credentialId}", "{c}").Replace(rt.Path)
		for _, sd := range fuzzSeeds {
			f.Add(rt.Method, path+"?"+sd.query, []byte(sd.body))
		}
	}
	f.Add("GET", "/api/v1/pipelines/{p}/../{p}", []byte(nil))
	f.Add("POST", "/api/v1/pipelines/{p}/spec/save", []byte(`{"spec":{"namespace":"a","jobs":[{"name":"b","steps":[{"uses":"actions/nope@v1"}]}]}}`))
	f.Add("PUT", "/api/v1/pipelines/{p}", []byte(`{"name":"renamed","metadata":null}`))
	f.Add("DELETE", "/api/v1/pipelines/{p}", []byte(nil))
	f.Add("PUT", "/api/v1/agents/{a}", []byte(`{"labels":{"pool":"b"},"disabled":false}`))
	f.Add("PUT", "/api/v1/agents/{a}", []byte(`{"labels":null}`))
	f.Add("DELETE", "/api/v1/agents/{a}", []byte(nil))
	f.Add("POST", "/api/v1/registration-tokens", []byte(`{"name":"x","expiresAt":"2099-01-01T00:00:00Z","maxUses":1}`))
	f.Add("POST", "/api/v1/secrets", []byte(`{"name":"FUZZ_TOKEN","value":"another-value","pipelineId":"{p}"}`))
	f.Add("POST", "/api/v1/secrets", []byte(`{"name":"PROJ","value":"line1\nline2","projectId":"proj_demo"}`))
	f.Add("GET", "/api/v1/secrets?pipelineId={p}", []byte(nil))
	f.Add("PUT", "/api/v1/secrets/{k}", []byte(`{"name":"RENAMED","value":"new-value"}`))
	f.Add("PUT", "/api/v1/secrets/{k}", []byte(`{"pipelineId":"{p}"}`))
	f.Add("DELETE", "/api/v1/secrets/{k}", []byte(nil))
	f.Add("POST", "/api/v1/credentials", []byte(`{"name":"fuzz","kind":"gitlab","accessToken":"glpat-0123456789"}`))
	f.Add("POST", "/api/v1/credentials", []byte(`{"name":"mirror","kind":"basic","host":"git.example.com","username":"ci","accessToken":"pass-word","projectId":"proj_demo"}`))
	f.Add("GET", "/api/v1/credentials?projectId=proj_demo", []byte(nil))
	f.Add("PUT", "/api/v1/credentials/{c}", []byte(`{"name":"renamed","host":"","username":"","projectId":"proj_demo","accessToken":"ghp_new0123456789"}`))
	f.Add("PUT", "/api/v1/credentials/{c}", []byte(`{"kind":"ssh"}`))
	f.Add("PUT", "/api/v1/credentials/{c}", []byte(`{"privateKey":"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"}`))
	f.Add("DELETE", "/api/v1/credentials/{c}", []byte(nil))

	handler := e.srv.Handler()
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		req, err := http.NewRequest(method, "http://runnel.test"+ids.Replace(target), bytes.NewReader(body))
		if err != nil || req.URL.Host != "runnel.test" {
			return // not a request a client could send
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body)
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") && method != "HEAD" {
			var v any
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatalf("%s %s: not JSON: %s", method, target, rec.Body)
			}
			env, _ := v.(map[string]any)
			if imageapi.SeedPath(req.URL.Path) {
				// The seed's image API: errors are {"errors":[{code, message}]}.
				if errs, _ := env["errors"].([]any); rec.Code >= 400 && len(errs) != 1 {
					t.Fatalf("%s %s: bad seed error body: %s", method, target, rec.Body)
				}
				return
			}
			if rec.Code >= 400 && (env["code"] != float64(rec.Code) || env["errMsg"] == "") {
				t.Fatalf("%s %s: bad error envelope: %s", method, target, rec.Body)
			}
		}
	})
}

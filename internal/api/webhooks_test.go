package api

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel/internal/trigger/webhook"
)

// hookSpec starts runs for pushes and pull requests to main (with env=prod)
// and for tags v*.
var hookSpec = map[string]any{
	"namespace": "demo.hooks", "version": "v1",
	"variables": map[string]any{"env": map[string]any{"default": "dev", "options": []any{"dev", "prod"}}},
	"triggers": []any{
		map[string]any{"type": "event", "events": []any{"push", "pull_request"}, "branches": []any{"main"},
			"variables": map[string]any{"env": "prod"}},
		map[string]any{"type": "event", "tags": []any{"v*"}},
	},
	"jobs": []any{map[string]any{"name": "build", "steps": []any{map[string]any{"name": "s", "run": "echo ${{ trigger.branch }}"}}}},
}

// forge describes how a provider's deliveries look.
type forge struct {
	provider            string
	eventHeader         string
	push, tag, pr, ping string // event header values
	deliveryHeader      string
	dir                 string
	prFile              string
	// pushCommit is the head commit of testdata push.json.
	pushCommit string
}

var forges = []forge{
	{"github", "X-GitHub-Event", "push", "push", "pull_request", "ping", "X-GitHub-Delivery", "github", "pr_opened.json",
		"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"},
	{"gitlab", "X-Gitlab-Event", "Push Hook", "Tag Push Hook", "Merge Request Hook", "", "X-Gitlab-Event-UUID", "gitlab", "mr_open.json",
		"da1560886d4f094c3e6c9ef40349f7d38b5d27d7"},
	{"gitea", "X-Gitea-Event", "push", "push", "pull_request", "", "X-Gitea-Delivery", "gitea", "pr_opened.json",
		"bffeb74224043ba2feb48d137756c8a9331c449a"},
	{"bitbucket", "X-Event-Key", "repo:push", "repo:push", "pullrequest:created", "diagnostics:ping", "X-Request-UUID", "bitbucket", "pr_created.json",
		"709d658dc5b6d6afcd46049c2f332ee3f515a67d"},
}

func hookPayload(t *testing.T, f forge, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "trigger", "webhook", "testdata", f.dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// onBranch returns a push payload moved to another branch.
func onBranch(f forge, body []byte, branch string) []byte {
	if f.provider == "bitbucket" {
		return bytes.ReplaceAll(body, []byte(`"name": "main"`), []byte(`"name": "`+branch+`"`))
	}
	for _, from := range []string{"refs/heads/main", "refs/heads/develop"} {
		body = bytes.ReplaceAll(body, []byte(`"`+from+`"`), []byte(`"refs/heads/`+branch+`"`))
	}
	return body
}

// deliver sends a signed delivery without an API token.
func (e *env) deliver(f forge, pid, event, delivery string, body []byte, secret string) *resp {
	e.t.Helper()
	name, value := webhook.SignatureHeader(f.provider, body, secret)
	return e.do("POST", "/api/v1/webhooks/"+f.provider+"/"+pid, body, withToken(""),
		withHeader(f.eventHeader, event), withHeader(f.deliveryHeader, delivery), withHeader(name, value))
}

func (e *env) runCount(pid string) float64 {
	e.t.Helper()
	return e.do("GET", "/api/v1/pipelines/"+pid+"/runs", nil).must(e.t, 200).detail()["total"].(float64)
}

func TestWebhooksEndToEnd(t *testing.T) {
	for _, f := range forges {
		t.Run(f.provider, func(t *testing.T) {
			e := newSchedulerEnv(t)
			pid := e.createPipeline("hooks-"+f.provider, map[string]any{"spec": hookSpec})
			// No secret yet: refused, whatever the signature.
			push := onBranch(f, hookPayload(t, f, "push.json"), "main")
			e.deliver(f, pid, f.push, "d-0", push, "0123456789abcdef").mustErr(t, 401, "has no webhook secret", "webhook/rotate")

			rot := e.do("POST", "/api/v1/pipelines/"+pid+"/webhook/rotate", nil).must(t, 200).detail()
			secret := rot["secret"].(string)
			if len(secret) != 64 {
				t.Fatalf("secret %q: want 64 hex digits", secret)
			}
			wantURL := e.http.URL + "/api/v1/webhooks/" + f.provider + "/" + pid
			if got := rot["urls"].(map[string]any)[f.provider]; got != wantURL {
				t.Errorf("hook URL %v, want %s", got, wantURL)
			}

			// A good push to main: a run with the trigger context.
			a := e.deliver(f, pid, f.push, "d-1", push, secret).must(t, 201).detail()
			if a["triggered"] != true || a["replayed"] != false || a["event"] != "push" {
				t.Fatalf("push: %v", a)
			}
			runs := a["runs"].([]any)
			if len(runs) != 1 {
				t.Fatalf("push started %d runs", len(runs))
			}
			runID := runs[0].(map[string]any)["runId"].(string)
			run := e.do("GET", "/api/v1/pipelines/runs/"+runID, nil).must(t, 200).detail()
			tr, _ := run["trigger"].(map[string]any)
			if run["triggerType"] != "event" || run["triggeredBy"] != "webhook:"+f.provider || run["commit"] != f.pushCommit ||
				tr["branch"] != "main" || tr["event"] != "push" || tr["commit"] != f.pushCommit || tr["provider"] != f.provider ||
				tr["ref"] != "refs/heads/main" {
				t.Errorf("run: triggerType %v triggeredBy %v commit %v trigger %v", run["triggerType"], run["triggeredBy"], run["commit"], tr)
			}
			if run["variables"].(map[string]any)["env"] != "prod" {
				t.Errorf("the matched trigger's variables were not applied: %v", run["variables"])
			}

			// The same delivery again (the forge's redelivery): the same run.
			again := e.deliver(f, pid, f.push, "d-1", push, secret).must(t, 200).detail()
			if again["replayed"] != true || again["triggered"] != true || again["runs"].([]any)[0].(map[string]any)["runId"] != runID {
				t.Errorf("replay: %v", again)
			}

			// A bad signature: 401, no run.
			e.deliver(f, pid, f.push, "d-2", push, "not-the-secret-at-all").mustErr(t, 401, "does not match")
			tampered := bytes.Replace(push, []byte(f.pushCommit), []byte(strings.Repeat("f", 40)), 1)
			name, value := webhook.SignatureHeader(f.provider, push, secret)
			r := e.do("POST", "/api/v1/webhooks/"+f.provider+"/"+pid, tampered, withToken(""),
				withHeader(f.eventHeader, f.push), withHeader(f.deliveryHeader, "d-3"), withHeader(name, value))
			if f.provider == "gitlab" {
				r.must(t, 201) // GitLab's token does not sign the body
			} else {
				r.mustErr(t, 401, "does not match")
			}
			want := 1.0
			if f.provider == "gitlab" {
				want = 2
			}
			if n := e.runCount(pid); n != want {
				t.Fatalf("%v runs after the refused deliveries, want %v", n, want)
			}

			// A push to another branch: 200, the reason, no run.
			miss := e.deliver(f, pid, f.push, "d-4", onBranch(f, push, "dev"), secret).must(t, 200).detail()
			if miss["triggered"] != false || !strings.Contains(fmt.Sprint(miss["reason"]), `branch "dev" is not included by branches.include ["main"]`) {
				t.Errorf("filter miss: %v", miss)
			}
			// Its redelivery says the same.
			if m := e.deliver(f, pid, f.push, "d-4", onBranch(f, push, "dev"), secret).must(t, 200).detail(); m["replayed"] != true || m["reason"] != miss["reason"] {
				t.Errorf("ignored replay: %v", m)
			}

			// A deleted branch: no run.
			del := e.deliver(f, pid, f.push, "d-5", hookPayload(t, f, "delete.json"), secret).must(t, 200).detail()
			if del["triggered"] != false || !strings.Contains(fmt.Sprint(del["reason"]), `branch "feature/old" was deleted`) {
				t.Errorf("delete: %v", del)
			}

			// A tag: the second trigger.
			tag := e.deliver(f, pid, f.tag, "d-6", hookPayload(t, f, "tag.json"), secret).must(t, 201).detail()
			tagRun := e.do("GET", "/api/v1/pipelines/runs/"+tag["runs"].([]any)[0].(map[string]any)["runId"].(string), nil).must(t, 200).detail()
			if tr := tagRun["trigger"].(map[string]any); tr["event"] != "tag" || !strings.HasPrefix(fmt.Sprint(tr["tag"]), "v") {
				t.Errorf("tag run trigger: %v", tr)
			}
			if tagRun["variables"].(map[string]any)["env"] != "dev" {
				t.Errorf("tag run variables: %v", tagRun["variables"])
			}

			// A pull request into main.
			pr := e.deliver(f, pid, f.pr, "d-7", hookPayload(t, f, f.prFile), secret).must(t, 201).detail()
			prRun := e.do("GET", "/api/v1/pipelines/runs/"+pr["runs"].([]any)[0].(map[string]any)["runId"].(string), nil).must(t, 200).detail()
			tr = prRun["trigger"].(map[string]any)
			if tr["event"] != "pull_request" || tr["pull_request"].(map[string]any)["base"] != "main" || tr["commit"] == "" {
				t.Errorf("pull request run trigger: %v", tr)
			}

			if f.ping != "" {
				p := e.deliver(f, pid, f.ping, "d-8", []byte(`{"zen":"Keep it logically awesome."}`), secret).must(t, 200).detail()
				if p["event"] != "ping" || p["triggered"] != false {
					t.Errorf("ping: %v", p)
				}
			}

			// A new secret: the old one no longer works.
			newSecret := e.do("POST", "/api/v1/pipelines/"+pid+"/webhook/rotate", nil).must(t, 200).detail()["secret"].(string)
			e.deliver(f, pid, f.push, "d-9", push, secret).mustErr(t, 401)
			e.deliver(f, pid, f.push, "d-9", push, newSecret).must(t, 201)
		})
	}
}

func TestWebhookRequests(t *testing.T) {
	e := newSchedulerEnv(t)
	gh := forges[0]
	const secret = "a-secret-chosen-by-the-user"
	pid := e.createPipeline("hooks", map[string]any{"spec": hookSpec, "webhookSecret": secret})
	p := e.do("GET", "/api/v1/pipelines/"+pid, nil).must(t, 200)
	if p.detail()["webhookSecretSet"] != true || bytes.Contains(p.body, []byte(secret)) {
		t.Errorf("pipeline read: %s", p.body)
	}
	other := e.createPipeline("no-hook", nil)
	if e.do("GET", "/api/v1/pipelines/"+other, nil).must(t, 200).detail()["webhookSecretSet"] != false {
		t.Error("webhookSecretSet true without a secret")
	}
	push := hookPayload(t, gh, "push.json")
	e.deliver(gh, pid, "push", "x-1", push, secret).must(t, 201)

	// Set through an update: the old secret stops working.
	upd := e.do("PUT", "/api/v1/pipelines/"+pid, map[string]any{"webhookSecret": "another-secret-of-the-user"}).must(t, 200)
	if bytes.Contains(upd.body, []byte("another-secret")) {
		t.Errorf("the update answer shows the secret: %s", upd.body)
	}
	e.deliver(gh, pid, "push", "x-2", push, secret).mustErr(t, 401)
	e.deliver(gh, pid, "push", "x-2", push, "another-secret-of-the-user").must(t, 201)
	e.do("PUT", "/api/v1/pipelines/"+pid, map[string]any{"webhookSecret": "short"}).mustErr(t, 400, "body.webhookSecret", "at least 16")
	e.do("POST", "/api/v1/pipelines", map[string]any{"projectId": "p", "name": "bad-hook", "webhookSecret": "has spaces in it ok?"}).
		mustErr(t, 400, "body.webhookSecret", "without spaces")
	if l := e.do("GET", "/api/v1/pipelines?name=bad-hook", nil).must(t, 200).detail(); l["total"] != 0.0 {
		t.Error("a refused creation left a pipeline behind")
	}

	base := "/api/v1/webhooks/"
	e.do("POST", base+"gogs/"+pid, push, withToken("")).mustErr(t, 404, `"gogs"`, "github, gitlab, gitea, bitbucket")
	e.do("POST", base+"github/pl_aaaaaaaaaaaaaaaaaaaa", push, withToken("")).mustErr(t, 404, "not found")
	e.do("POST", base+"github/"+pid, push, withToken(""), withHeader("X-GitHub-Event", "push")).mustErr(t, 401, "X-Hub-Signature-256 is missing")
	e.do("POST", base+"github/"+pid, rawBody("payload=%7B%7D"), withToken(""), withHeader("Content-Type", "application/x-www-form-urlencoded")).
		mustErr(t, 415, "application/json")
	big := append([]byte(`{"ref":"refs/heads/main","pad":"`), bytes.Repeat([]byte("x"), 5<<20)...)
	big = append(big, `"}`...)
	e.deliver(gh, pid, "push", "x-big", big, "another-secret-of-the-user").mustErr(t, 413, "5 MiB")
	// Bodies between the API's usual limit and 5 MiB are accepted.
	mid := bytes.Replace(push, []byte(`"forced": false,`), []byte(`"forced": false, "pad": "`+strings.Repeat("x", 2<<20)+`",`), 1)
	e.deliver(gh, pid, "push", "x-mid", mid, "another-secret-of-the-user").must(t, 201)
	// A signed body that is not the documented JSON: 400.
	e.deliver(gh, pid, "push", "x-bad", []byte(`{"ref": 42}`), "another-secret-of-the-user").mustErr(t, 400, "github \"push\" event")
	// A pull request that is closed: ignored with the action named.
	closed := e.deliver(gh, pid, "pull_request", "x-closed", hookPayload(t, gh, "pr_closed.json"), "another-secret-of-the-user").must(t, 200).detail()
	if closed["event"] != "ignored" || !strings.Contains(fmt.Sprint(closed["reason"]), `action "closed"`) {
		t.Errorf("closed pull request: %v", closed)
	}

	// Behind a proxy, the rotation's URLs use the forwarded scheme.
	rot := e.do("POST", "/api/v1/pipelines/"+pid+"/webhook/rotate", nil, withHeader("X-Forwarded-Proto", "https")).must(t, 200).detail()
	if u := rot["urls"].(map[string]any)["gitea"].(string); !strings.HasPrefix(u, "https://") || !strings.HasSuffix(u, "/api/v1/webhooks/gitea/"+pid) {
		t.Errorf("forwarded URL: %s", u)
	}
}

// TestWebhookExternalURL: a configured external URL wins over the request.
func TestWebhookExternalURL(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.ExternalURL = "https://ci.example.com/" })
	pid := e.createPipeline("x", nil)
	rot := e.do("POST", "/api/v1/pipelines/"+pid+"/webhook/rotate", nil).must(t, 200).detail()
	if u := rot["urls"].(map[string]any)["bitbucket"]; u != "https://ci.example.com/api/v1/webhooks/bitbucket/"+pid {
		t.Errorf("URL %v", u)
	}
	// Without a secret key the secret cannot be sealed.
	e2 := newEnvWith(t, func(c *Config) { c.Secrets = nil })
	pid2 := e2.createPipeline("y", nil)
	e2.do("POST", "/api/v1/pipelines/"+pid2+"/webhook/rotate", nil).mustErr(t, 503, "no secret key")
}

// TestWebhookConcurrentDelivery: the same delivery arriving at once (two
// replicas, or a forge retrying while the first attempt is still in flight)
// starts one run, and every answer names it.
func TestWebhookConcurrentDelivery(t *testing.T) {
	e := newSchedulerEnv(t)
	gh := forges[0]
	const secret = "a-secret-chosen-by-the-user"
	pid := e.createPipeline("hooks", map[string]any{"spec": hookSpec, "webhookSecret": secret})
	body := hookPayload(t, gh, "push.json")
	name, value := webhook.SignatureHeader("github", body, secret)
	const n = 20
	answers := make([]*resp, n)
	errs := make([]error, n)
	done := make(chan int)
	for i := range n {
		go func() {
			answers[i], errs[i] = e.send("POST", "/api/v1/webhooks/github/"+pid, body, withToken(""),
				withHeader("X-GitHub-Event", "push"), withHeader("X-GitHub-Delivery", "same"), withHeader(name, value))
			done <- i
		}()
	}
	for range n {
		<-done
	}
	created := 0
	var ids []string
	for i, a := range answers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		e.check("POST", "/api/v1/webhooks/github/"+pid, a)
		if a.status == 201 {
			created++
		} else {
			a.must(t, 200)
		}
		ids = append(ids, a.detail()["runs"].([]any)[0].(map[string]any)["runId"].(string))
	}
	if created != 1 {
		t.Errorf("%d answers say a run was created, want 1", created)
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("two runs for one delivery: %s, %s", ids[0], id)
		}
	}
	if c := e.runCount(pid); c != 1 {
		t.Errorf("%v runs for one delivery", c)
	}
}

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/runnel-ci/runnel/internal/testgitea"
)

// TestWebUISignInWithGitea: a colleague signs in to the web UI with a real
// Gitea account in headless Chromium, is provisioned, lands on the
// pipelines, sees those of the project an admin made them a viewer of (no
// Run button, and 403 from the API if they try), approves a gate that names
// them once they are a developer; the admin sees it all in the audit log.
func TestWebUISignInWithGitea(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server, Gitea and Chromium")
	}
	g := testgitea.Start(t)
	_, c := startUIServer(t)
	g.CreateUser(t, "gina", "gina-pass-123", "gina@example.com")
	callback := c.base + "/api/v1/auth/providers/gitea/callback"
	id, secret := g.CreateOAuthApp(t, "runnel", []string{callback})
	if env := c.do("POST", "/api/v1/auth/providers", map[string]any{"name": "gitea", "kind": "gitea", "displayName": "Acme Gitea",
		"url": g.URL, "clientId": id, "clientSecret": secret}, nil); env.Code != 0 {
		t.Fatalf("configure the provider: %+v", env)
	}
	site := c.createPipelineIn("web", "site", `{"namespace":"t","stages":[{"name":"s","jobs":[{"name":"j","steps":[{"run":"echo hi"}]}]}]}`)
	c.createPipelineIn("ops", "hidden", `{"namespace":"t","stages":[{"name":"s","jobs":[{"name":"j","steps":[{"run":"echo hi"}]}]}]}`)

	b := newBrowser(t, c.base, 1280, 900)
	root := t
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	var ginaID string
	step("sign in with Gitea", func(t *testing.T) {
		b.t = t
		b.run("the sign-in page offers Gitea", 20*time.Second, chromedp.Navigate(c.base+"/pipelines"), chromedp.WaitVisible(`main h1`, chromedp.ByQuery),
			waitJS(`[...document.querySelectorAll('a.provider')].some(a => a.textContent === 'Sign in with Acme Gitea')`))
		var href string
		b.eval(`document.querySelector('a.provider').href`, &href)
		if !strings.HasPrefix(href, c.base+"/api/v1/auth/providers/gitea/login?returnTo=") {
			t.Fatalf("the provider's link: %s", href)
		}
		// The journey to Gitea and back, in a tab of its own (see newTab)
		// without scripts: the test build of Gitea has no front-end assets,
		// and its pages' inline scripts wait for them forever; its sign-in
		// and grant forms are plain HTML forms.
		gt := b.newTab(t)
		gt.run("Gitea's sign-in form", 20*time.Second, emulation.SetScriptExecutionDisabled(true), chromedp.Navigate(href),
			chromedp.WaitVisible(`#user_name`, chromedp.ByID))
		var at string
		gt.eval(`location.href`, &at)
		if !strings.HasPrefix(at, g.URL+"/user/login") {
			t.Fatalf("the provider link went to %s", at)
		}
		gt.run("sign in at Gitea", 20*time.Second,
			chromedp.SendKeys(`#user_name`, "gina", chromedp.ByID),
			chromedp.SendKeys(`#password`, "gina-pass-123", chromedp.ByID),
			chromedp.Submit(`#password`, chromedp.ByID),
			chromedp.WaitVisible(`button[name=granted][value=true]`, chromedp.ByQuery))
		gt.run("grant Runnel access", 20*time.Second, chromedp.Click(`button[name=granted][value=true]`, chromedp.ByQuery))
		// The callback provisions gina and sets the session cookie.
		deadline := time.Now().Add(20 * time.Second)
		for ginaID == "" && time.Now().Before(deadline) {
			var users struct {
				Items []struct {
					UserID, Login, Email string
				} `json:"items"`
			}
			c.do("GET", "/api/v1/users", nil, &users)
			for _, u := range users.Items {
				if u.Login == "gina" && u.Email == "gina@example.com" {
					ginaID = u.UserID
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if ginaID == "" {
			t.Fatal("gina was not provisioned by the sign-in")
		}
		b = b.newTab(root)
		b.run("signed in", 20*time.Second, chromedp.Navigate(c.base+"/pipelines"), chromedp.WaitVisible(`main h1`, chromedp.ByQuery),
			waitJS(`location.pathname === '/pipelines' && document.querySelector('main h1')?.textContent === 'Pipelines'`),
			waitJS(`document.querySelector('.who .subject')?.textContent === 'gina'`))
		b.shot("signed-in-with-gitea")
		// A new user holds no role yet: no pipeline is listed.
		b.run("no pipelines yet", 20*time.Second, waitJS(`!document.body.innerText.includes('site') && !document.body.innerText.includes('hidden')`))
	})

	step("the session is listed", func(t *testing.T) {
		b.t = t
		b.run("tokens page", 20*time.Second, chromedp.Navigate(c.base+"/tokens"), chromedp.WaitVisible(`main h1`, chromedp.ByQuery),
			waitJS(`[...document.querySelectorAll('tr[data-session]')].some(r => r.innerText.includes('this browser') && r.innerText.includes('gitea'))`))
	})

	step("a viewer sees, and may not run", func(t *testing.T) {
		b.t = t
		if env := c.do("PUT", "/api/v1/projects/web/members/"+ginaID, map[string]any{"role": "viewer"}, nil); env.Code != 0 {
			t.Fatalf("make gina a viewer: %+v", env)
		}
		// Roles are read when the page loads.
		b.run("reload", 20*time.Second, chromedp.Navigate(c.base+"/pipelines"), chromedp.WaitVisible(`main h1`, chromedp.ByQuery),
			waitJS(`document.body.innerText.includes('site')`))
		var hidden bool
		b.eval(`document.body.innerText.includes('hidden')`, &hidden)
		if hidden {
			t.Fatal("a pipeline of another project is listed")
		}
		b.run("open the pipeline", 20*time.Second, chromedp.Navigate(c.base+"/pipelines/"+site), chromedp.WaitVisible(`main h1`, chromedp.ByQuery),
			waitJS(`document.querySelector('main h1')?.textContent === 'site'`))
		var runButtons int
		b.eval(`[...document.querySelectorAll('button')].filter(x => x.textContent.includes('Run')).length`, &runButtons)
		if runButtons != 0 {
			t.Fatal("a viewer is offered the Run button")
		}
		var status int
		b.run("try the API anyway", 20*time.Second, chromedp.Evaluate(fmt.Sprintf(
			`fetch('/api/v1/pipelines/%s/trigger', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{}'}).then(r => r.status)`, site),
			&status, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
		if status != 403 {
			t.Fatalf("a viewer's trigger: %d, want 403", status)
		}
	})

	step("an approver named on a gate approves it", func(t *testing.T) {
		b.t = t
		if env := c.do("PUT", "/api/v1/projects/web/members/"+ginaID, map[string]any{"role": "developer"}, nil); env.Code != 0 {
			t.Fatalf("make gina a developer: %+v", env)
		}
		gated := c.createPipelineIn("web", "gated", `{"namespace":"t","approval":{"approvers":["gina"],"message":"gina, ship it?"},
			"stages":[{"name":"s","jobs":[{"name":"j","steps":[{"run":"echo shipped"}]}]}]}`)
		run := c.trigger(gated, "")
		c.pendingGate(run, "pipeline")
		b.run("open the run", 20*time.Second, chromedp.Navigate(c.base+"/runs/"+run), chromedp.WaitVisible(`main h1`, chromedp.ByQuery),
			waitJS(`document.body.innerText.includes('may decide: gina')`))
		b.shot("approval-by-gina")
		b.run("approve", 20*time.Second, clickJS(`.approval button.ok`),
			waitJS(`!document.querySelector('.approval')`))
		if d := c.waitRun(run, 60*time.Second, final); d.Status != "success" {
			t.Fatalf("the approved run ended %s", d.Status)
		}
		var gates []approvalOut
		c.do("GET", "/api/v1/pipelines/runs/"+run+"/approvals", nil, &gates)
		if len(gates) != 1 || gates[0].DecidedBy != "gina" || gates[0].Status != "approved" {
			t.Fatalf("gates: %+v", gates)
		}
	})

	step("projects and members", func(t *testing.T) {
		b.t = t
		if env := c.do("POST", "/api/v1/users", map[string]any{"login": "hank"}, nil); env.Code != 0 {
			t.Fatalf("create hank: %+v", env)
		}
		b.run("the projects gina may see", 20*time.Second, chromedp.Navigate(c.base+"/projects"), chromedp.WaitVisible(`main h1`, chromedp.ByQuery),
			waitJS(`document.querySelector('tr[data-project="web"]')?.innerText.includes('developer') && !document.querySelector('tr[data-project="ops"]')`))
		b.run("web: no member management for a developer", 20*time.Second, clickJS(`tr[data-project="web"] a`),
			waitJS(`document.querySelector('main h1')?.textContent === 'web' && !!document.querySelector('tr[data-member="gina"]')`))
		var canAdd bool
		b.eval(`!!document.querySelector('input[name=member]')`, &canAdd)
		if canAdd {
			t.Fatal("a developer is offered to add members")
		}
		b.run("create a project", 20*time.Second, chromedp.Navigate(c.base+"/projects"), chromedp.WaitVisible(`input[name=projectId]`, chromedp.ByQuery),
			chromedp.SendKeys(`input[name=projectId]`, "ginas", chromedp.ByQuery),
			chromedp.Click(`form.card button[type=submit]`, chromedp.ByQuery),
			waitJS(`location.pathname === '/projects/ginas' && !!document.querySelector('input[name=member]')`))
		b.run("add hank as a viewer", 20*time.Second,
			chromedp.SendKeys(`input[name=member]`, "hank", chromedp.ByQuery),
			setSelect(`select[name=role]`, "viewer"),
			chromedp.Click(`form.card button[type=submit]`, chromedp.ByQuery),
			waitJS(`!!document.querySelector('tr[data-member="hank"]')`))
		role := func() string {
			var members struct {
				Items []struct{ Name, Role string } `json:"items"`
			}
			c.do("GET", "/api/v1/projects/ginas/members", nil, &members)
			for _, m := range members.Items {
				if m.Name == "hank" {
					return m.Role
				}
			}
			return ""
		}
		if r := role(); r != "viewer" {
			t.Fatalf("hank's role after adding him: %q", r)
		}
		b.run("make hank a maintainer", 20*time.Second, setSelect(`tr[data-member="hank"] select`, "maintainer"),
			waitJS(`document.querySelector('.toast')?.textContent.includes('hank is now maintainer')`))
		if r := role(); r != "maintainer" {
			t.Fatalf("hank's role after the change: %q", r)
		}
		b.shot("project-members")
	})

	step("the audit log", func(t *testing.T) {
		b.t = t
		var audit struct {
			Items []struct {
				Actor, Action, Resource string
			} `json:"items"`
		}
		c.do("GET", "/api/v1/audit", nil, &audit)
		var got []string
		for _, e := range audit.Items {
			got = append(got, e.Actor+" "+e.Action)
		}
		all := strings.Join(got, "\n")
		for _, want := range []string{"admin PUT /api/v1/projects/{projectId}/members/{memberId}", "gina POST /api/v1/approvals/{approvalId}/approve",
			"admin POST /api/v1/auth/providers"} {
			if !strings.Contains(all, want) {
				t.Errorf("the audit log lacks %q:\n%s", want, all)
			}
		}
	})
}

package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/runnel-ci/runnel/internal/testgitea"
)

// TestWebUIForges walks seed 001's forge path through the web UI, in
// headless Chromium against a real Gitea: the admin connects their Gitea
// account from the Credentials page (the forge's sign-in and grant forms),
// comes back to the page with the account listed, opens its repositories
// (admin permission on their own, Activate disabled where they may only
// push), activates dev/app into a project, and lands on the pipeline's page,
// whose Repository panel shows the webhook active; a push runs and the run
// page shows the commit status; a hook deleted in Gitea shows as missing
// after Check and active again after Repair; Deactivate removes it and says
// so, Activate brings it back.
func TestWebUIForges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server, Gitea and Chromium")
	}
	chromiumPath(t)
	g := testgitea.Start(t)
	g.CreateUser(t, "dev", "dev-pass-1234", "dev@example.com")
	g.CreateUser(t, "other", "other-pass-1234", "other@example.com")
	g.CreateRepo(t, "dev", "app")
	g.CreateRepo(t, "dev", "docs")
	g.CreateRepo(t, "other", "lib")
	// dev may push to other/lib, not administer it.
	g.API(t, "PUT", "/repos/other/lib/collaborators/dev", map[string]any{"permission": "write"}, nil)

	// The server's external URL (the hooks' address) must be known before
	// it starts: a fixed port.
	port := freeTCPPort(t)
	base := "http://127.0.0.1:" + port
	srv := startServerProc(t, "ui-forges", "", "--addr", "127.0.0.1:"+port, "--external-url", base,
		"--embedded-agent-capacity", "2", "--embedded-agent-backend", "local")
	c := &client{t: t, base: "http://" + srv.addr}
	clientID, clientSecret := g.CreateOAuthApp(t, "runnel", []string{base + "/api/v1/auth/providers/gitea/callback"})
	if env := c.do("POST", "/api/v1/auth/providers", map[string]any{"name": "gitea", "kind": "gitea", "displayName": "Gitea", "url": g.URL,
		"clientId": clientID, "clientSecret": clientSecret, "signIn": false, "connect": true}, nil); env.Code != 0 {
		t.Fatalf("the provider: %+v", env)
	}
	if env := c.do("POST", "/api/v1/projects", map[string]any{"projectId": "demo", "name": "Demo"}, nil); env.Code != 0 {
		t.Fatalf("the project: %+v", env)
	}
	type giteaHook struct {
		ID     int64             `json:"id"`
		Config map[string]string `json:"config"`
	}
	hooks := func() []giteaHook {
		var hs []giteaHook
		g.API(t, "GET", "/repos/dev/app/hooks", nil, &hs)
		return hs
	}

	b := newBrowser(t, c.base, 1280, 900)
	root := t
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	okDialog := func(what string) {
		b.t.Helper()
		b.run(what, 20*time.Second,
			chromedp.WaitVisible(`dialog[open] button[value=ok]`, chromedp.ByQuery),
			chromedp.Click(`dialog[open] button[value=ok]`, chromedp.ByQuery),
			waitJS(`!document.querySelector('dialog')`))
	}

	step("sign in", func(t *testing.T) {
		b.t = t
		// The first page also waits for the browser's cold start.
		b.run("the sign-in page", 40*time.Second, chromedp.Navigate(c.base+"/credentials"), chromedp.WaitVisible(`#token`, chromedp.ByID),
			chromedp.SendKeys(`#token`, testToken, chromedp.ByID),
			chromedp.Click(`form.signin button[type=submit]`, chromedp.ByQuery),
			waitJS(`location.pathname === '/credentials' && document.querySelector('main h1')?.textContent === 'Credentials'`),
			waitJS(`document.querySelector('section.connected')?.innerText.includes('No account connected yet')`))
	})

	var credID string
	step("connect the Gitea account", func(t *testing.T) {
		b.t = t
		connect := `document.querySelector('section.connected a[data-provider="gitea"]')`
		b.run("the Connect Gitea button", 20*time.Second, waitJS(connect+`?.textContent === 'Connect Gitea'`))
		var href string
		b.eval(connect+`.href`, &href)
		if want := c.base + "/api/v1/auth/providers/gitea/connect?returnTo=%2Fcredentials"; href != want {
			t.Fatalf("Connect Gitea goes to %s, want %s", href, want)
		}
		b.shot("credentials-connect")
		// The journey to Gitea and back in a tab of its own (see newTab):
		// the page is drawn with scripts, then they are turned off for
		// Gitea (the test build has no front-end assets, and its pages'
		// inline scripts wait for them forever; its sign-in and grant forms
		// are plain HTML forms) and the button is clicked: a link to the
		// API, which the browser follows as a whole page.
		gt := b.newTab(t)
		gt.run("the Gitea sign-in form", 30*time.Second,
			chromedp.Navigate(c.base+"/credentials"),
			waitJS(connect+`?.textContent === 'Connect Gitea'`),
			emulation.SetScriptExecutionDisabled(true),
			chromedp.Click(`section.connected a[data-provider="gitea"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`#user_name`, chromedp.ByID))
		var at string
		gt.eval(`location.href`, &at)
		if !strings.HasPrefix(at, g.URL+"/user/login") {
			t.Fatalf("Connect Gitea went to %s", at)
		}
		gt.run("sign in at Gitea", 20*time.Second,
			chromedp.SendKeys(`#user_name`, "dev", chromedp.ByID),
			chromedp.SendKeys(`#password`, "dev-pass-1234", chromedp.ByID),
			chromedp.Submit(`#password`, chromedp.ByID),
			chromedp.WaitVisible(`button[name=granted][value=true]`, chromedp.ByQuery))
		gt.run("grant Runnel access", 20*time.Second, chromedp.Click(`button[name=granted][value=true]`, chromedp.ByQuery))
		// The callback sends the browser back to the Credentials page with
		// the new credential's id.
		landed := gt.landedAt(t, c.base+"/credentials?connected=cred_", 20*time.Second)
		u, err := url.Parse(landed)
		if err != nil {
			t.Fatal(err)
		}
		credID = u.Query().Get("connected")
		b = b.newTab(root)
		b.run("the account is listed", 20*time.Second, chromedp.Navigate(landed), chromedp.WaitVisible(`main h1`, chromedp.ByQuery),
			waitJS(`document.querySelector('section.connected .alert.success')?.textContent.includes('Connected gitea account dev.')`),
			waitJS(fmt.Sprintf(`document.querySelector('tr[data-credential=%q]')?.innerText.includes('dev')`, credID)),
			waitJS(fmt.Sprintf(`document.querySelector('tr[data-credential=%q] .chip')?.textContent === 'gitea'`, credID)),
			// Shown once: the address no longer carries the parameter.
			waitJS(`location.search === ''`))
		b.shot("credentials-connected")
		var cred struct {
			Provider, LoginName, Kind string
		}
		c.do("GET", "/api/v1/credentials/"+credID, nil, &cred)
		if cred.Provider != "gitea" || cred.LoginName != "dev" || cred.Kind != "gitea" {
			t.Fatalf("the connected credential: %+v", cred)
		}
	})

	var pid string
	step("list the repositories and activate one", func(t *testing.T) {
		b.t = t
		row := func(full string) string { return fmt.Sprintf(`document.querySelector('tr[data-repo=%q]')`, full) }
		b.run("open the repositories", 30*time.Second,
			clickJS(fmt.Sprintf(`tr[data-credential=%q] a[href$="/repositories"]`, credID)),
			waitJS(`location.pathname === '/credentials/`+credID+`/repositories' && document.querySelector('main h1')?.textContent === 'Repositories'`),
			waitJS(row("dev/app")+`?.querySelector('.perms')?.textContent === 'pullpushadmin'`),
			waitJS(row("dev/app")+`.querySelector('code')?.textContent === 'main'`),
			waitJS(row("dev/app")+`.querySelector('a')?.href === '`+g.URL+`/dev/app'`),
			waitJS(row("other/lib")+`?.querySelector('.perms')?.textContent === 'pullpush'`))
		var lib struct {
			Disabled bool   `json:"disabled"`
			Why      string `json:"why"`
			Enabled  bool   `json:"enabled"`
		}
		b.eval(`({disabled: `+row("other/lib")+`.querySelector('button[data-activate]').disabled,
			why: `+row("other/lib")+`.querySelector('button[data-activate]').closest('[title]').title,
			enabled: !`+row("dev/app")+`.querySelector('button[data-activate]').disabled})`, &lib)
		if !lib.Disabled || lib.Why != "activation needs admin permission on the repository" || !lib.Enabled {
			t.Fatalf("Activate buttons: %+v", lib)
		}
		b.shot("repositories")
		b.run("search", 20*time.Second,
			chromedp.SendKeys(`input[name=search]`, "doc", chromedp.ByQuery),
			waitJS(`document.querySelectorAll('tr[data-repo]').length === 1 && !!`+row("dev/docs")),
			waitJS(`location.search === '?search=doc'`),
			clearField(`input[name=search]`),
			waitJS(`!!`+row("dev/app")+` && !!`+row("other/lib")))
		b.run("refresh", 20*time.Second,
			chromedp.Click(`//button[contains(., "Refresh")]`, chromedp.BySearch),
			waitJS(`document.querySelector('.listed')?.textContent.includes('listed by the forge')`))
		b.run("activate dev/app", 30*time.Second,
			clickJS(`button[data-activate="dev/app"]`),
			chromedp.WaitVisible(`dialog[open] select[name=project]`, chromedp.ByQuery),
			setSelect(`dialog[open] select[name=project]`, "demo"))
		okDialog("activate")
		b.run("the pipeline's page", 30*time.Second,
			waitJS(`location.pathname.startsWith('/pipelines/pl_') && document.querySelector('main h1')?.textContent === 'app'`),
			waitJS(`document.querySelector('.repo-panel .repo')?.innerText.includes('dev/app')`),
			waitJS(`document.querySelector('.repo-panel .hook-state .badge')?.textContent.includes('active')`),
			waitJS(`document.querySelector('.repo-panel')?.innerText.includes('`+base+`/api/v1/webhooks/gitea/')`),
			waitJS(`!document.querySelector('.repo-panel .deactivated')`))
		b.eval(`location.pathname.split('/')[2]`, &pid)
		if hs := hooks(); len(hs) != 1 || hs[0].Config["url"] != base+"/api/v1/webhooks/gitea/"+pid {
			t.Fatalf("hooks in Gitea after activating: %+v", hs)
		}
		b.shot("pipeline-repository")
	})

	step("a push runs and the run shows its commit status", func(t *testing.T) {
		b.t = t
		work := gitClone(t, g, "dev", "dev-pass-1234", "dev/app")
		sha := gitCommit(t, work, ".runnel/pipeline.yaml", "version: v1\nnamespace: app\njobs:\n  - name: build\n    steps:\n      - run: echo built\n",
			"add the pipeline", "main")
		var run string
		waitFor(t, 30*time.Second, "a run of "+sha, func() bool {
			var runs struct {
				Items []struct {
					RunID  string `json:"runId"`
					Commit string `json:"commit"`
				} `json:"items"`
			}
			c.do("GET", "/api/v1/pipelines/"+pid+"/runs", nil, &runs)
			for _, r := range runs.Items {
				if r.Commit == sha {
					run = r.RunID
				}
			}
			return run != ""
		})
		b.run("the run page", 60*time.Second,
			chromedp.Navigate(c.base+"/runs/"+run), chromedp.WaitVisible(`main h1`, chromedp.ByQuery),
			waitJS(`document.querySelector('.run-head .badge')?.textContent.includes('success')`),
			waitJS(`document.querySelector('.commit-statuses li[data-context="runnel/app"] .badge')?.textContent.includes('success')`),
			waitJS(`document.querySelector('.commit-statuses li[data-context="runnel/app"] a')?.href === '`+base+`/runs/`+run+`'`),
			waitJS(`document.querySelector('.commit-statuses li code')?.textContent === '`+sha[:10]+`'`))
		b.shot("run-commit-statuses")
	})

	step("check, repair, deactivate, activate", func(t *testing.T) {
		b.t = t
		b.open("/pipelines/" + pid)
		b.run("the panel", 20*time.Second, waitJS(`document.querySelector('.repo-panel .hook-state .badge')?.textContent.includes('active')`))
		hs := hooks()
		if len(hs) != 1 {
			t.Fatalf("hooks: %+v", hs)
		}
		g.API(t, "DELETE", "/repos/dev/app/hooks/"+strconv.FormatInt(hs[0].ID, 10), nil, nil)
		b.run("check: missing", 20*time.Second,
			clickJS(`.repo-panel button[data-action=check]`),
			waitJS(`document.querySelector('.repo-panel .hook-state .badge')?.textContent.includes('missing')`),
			waitJS(`document.querySelector('.repo-panel .hook-error')?.textContent.includes('deleted')`),
			waitJS(`document.querySelector('.toast')?.textContent.includes('Webhook checked: missing')`))
		b.shot("pipeline-hook-missing")
		b.run("repair: active", 20*time.Second,
			dismissToasts(),
			clickJS(`.repo-panel button[data-action=repair]`),
			waitJS(`document.querySelector('.repo-panel .hook-state .badge')?.textContent.includes('active')`),
			waitJS(`!document.querySelector('.repo-panel .hook-error')`))
		if hs := hooks(); len(hs) != 1 || hs[0].Config["url"] != base+"/api/v1/webhooks/gitea/"+pid {
			t.Fatalf("hooks in Gitea after repair: %+v", hs)
		}
		b.run("deactivate", 20*time.Second,
			dismissToasts(),
			clickJS(`.repo-panel button[data-action=deactivate]`),
			waitJS(`document.querySelector('dialog[open]')?.textContent.includes('Deactivate app?')`))
		okDialog("confirm deactivating")
		b.run("deactivated", 20*time.Second,
			waitJS(`document.querySelector('.repo-panel .deactivated')?.textContent.includes('Deactivated: cron and webhooks start no runs')`),
			waitJS(`document.querySelector('.repo-panel .hook-state .badge')?.textContent.includes('none')`),
			waitJS(`!!document.querySelector('.repo-panel button[data-action=activate]') && !document.querySelector('.repo-panel button[data-action=deactivate]')`))
		b.shot("pipeline-deactivated")
		var p struct {
			Active bool `json:"active"`
		}
		c.do("GET", "/api/v1/pipelines/"+pid, nil, &p)
		if hs := hooks(); p.Active || len(hs) != 0 {
			t.Fatalf("after Deactivate: active %v, hooks %+v", p.Active, hs)
		}
		// Reloaded, the page says the same.
		b.open("/pipelines/" + pid)
		b.run("still deactivated", 20*time.Second,
			waitJS(`document.querySelector('.repo-panel .deactivated')?.textContent.includes('Deactivated: cron and webhooks start no runs')`))
		b.run("activate", 20*time.Second,
			clickJS(`.repo-panel button[data-action=activate]`),
			waitJS(`!document.querySelector('.repo-panel .deactivated') && document.querySelector('.repo-panel .hook-state .badge')?.textContent.includes('active')`))
		if hs := hooks(); len(hs) != 1 {
			t.Fatalf("hooks after activating again: %+v", hs)
		}
	})

	step("a viewer checks, and changes nothing", func(t *testing.T) {
		b.t = t
		var u struct {
			UserID string `json:"userId"`
		}
		if env := c.do("POST", "/api/v1/users", map[string]any{"login": "vera"}, &u); env.Code != 0 {
			t.Fatalf("create vera: %+v", env)
		}
		if env := c.do("PUT", "/api/v1/projects/demo/members/"+u.UserID, map[string]any{"role": "viewer"}, nil); env.Code != 0 {
			t.Fatalf("make vera a viewer: %+v", env)
		}
		var tok struct {
			Token string `json:"token"`
		}
		if env := c.do("POST", "/api/v1/users/"+u.UserID+"/tokens", map[string]any{"name": "ui"}, &tok); env.Code != 0 || tok.Token == "" {
			t.Fatalf("vera's token: %+v", env)
		}
		b.run("sign in as vera", 20*time.Second,
			clickJS(`.who button`),
			chromedp.WaitVisible(`#token`, chromedp.ByID),
			chromedp.SendKeys(`#token`, tok.Token, chromedp.ByID),
			chromedp.Click(`form.signin button[type=submit]`, chromedp.ByQuery),
			waitJS(`document.querySelector('.who .subject')?.textContent === 'vera'`))
		b.open("/pipelines/" + pid)
		b.run("the panel, read-only", 20*time.Second,
			waitJS(`document.querySelector('.repo-panel .hook-state .badge')?.textContent.includes('active')`),
			waitJS(`[...document.querySelectorAll('.repo-panel button')].map(x => x.dataset.action).join() === 'check'`),
			clickJS(`.repo-panel button[data-action=check]`),
			waitJS(`document.querySelector('.toast')?.textContent.includes('Webhook checked: active')`))
	})
}

// landedAt waits for the tab to be at an address starting with prefix and
// returns it. A poll in the page can lose its execution context while a
// navigation replaces the document (the forge's redirects): each look is a
// fresh evaluation, and a failed one is tried again.
func (b *browser) landedAt(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	var at string
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		err := chromedp.Run(ctx, chromedp.Evaluate(`location.href`, &at))
		cancel()
		if err == nil && strings.HasPrefix(at, prefix) {
			return at
		}
	}
	t.Fatalf("the tab is at %s, not at %s…", at, prefix)
	return ""
}

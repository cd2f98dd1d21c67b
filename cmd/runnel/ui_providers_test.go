package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// TestWebUIProviders: a site admin configures a sign-in provider in the
// web UI's Sign-in providers page, in headless Chromium: creates a Gitea
// provider through the form (its callback URL shown with a copy button),
// edits its display name without touching the secret (the stored secret
// still reaches the forge's token endpoint), turns connecting accounts off,
// meets the API's refusals in the API's words, and deletes it; a user who
// is no site admin is not offered the page. Each change is checked through
// the API.
func TestWebUIProviders(t *testing.T) {
	chromiumPath(t)
	_, c := startUIServer(t)
	base := c.base
	const (
		name     = "acme-gitea"
		secret   = "gitea-client-secret-0123456789"
		clientID = "runnel-ui-app"
	)
	callback := base + "/api/v1/auth/providers/" + name + "/callback"
	row := `tr[data-provider="` + name + `"]`

	// A forge's token endpoint that records what Runnel sends it (the client
	// secret is sent nowhere else) and refuses the code.
	type exchange struct{ clientID, secret, redirect, code string }
	exchanges := make(chan exchange, 4)
	forge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/login/oauth/access_token" {
			http.NotFound(w, r)
			return
		}
		_ = r.ParseForm()
		e := exchange{clientID: r.PostForm.Get("client_id"), secret: r.PostForm.Get("client_secret"),
			redirect: r.PostForm.Get("redirect_uri"), code: r.PostForm.Get("code")}
		if id, pw, ok := r.BasicAuth(); ok {
			e.clientID, e.secret = id, pw
		}
		exchanges <- e
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_grant","error_description":"the test forge only records the request"}`)
	}))
	t.Cleanup(forge.Close)

	type provider struct {
		Name           string   `json:"name"`
		Kind           string   `json:"kind"`
		DisplayName    string   `json:"displayName"`
		URL            string   `json:"url"`
		ClientID       string   `json:"clientId"`
		Scopes         []string `json:"scopes"`
		AllowedOrgs    []string `json:"allowedOrgs"`
		SignIn         bool     `json:"signIn"`
		Connect        bool     `json:"connect"`
		LoginURL       string   `json:"loginUrl"`
		ConnectURL     string   `json:"connectUrl"`
		CallbackURL    string   `json:"callbackUrl"`
		UpdatedAt      string   `json:"updatedAt"`
		AllowedDomains []string `json:"allowedDomains"`
	}
	getProvider := func(t *testing.T) provider {
		t.Helper()
		var p provider
		env := c.do("GET", "/api/v1/auth/providers/"+name, nil, &p)
		if env.Code != 0 {
			t.Fatalf("GET the provider: %+v", env)
		}
		if strings.Contains(string(env.Detail), secret) {
			t.Fatalf("the API shows the client secret: %s", env.Detail)
		}
		return p
	}
	// publicEntry is the provider in the list anyone may read.
	publicEntry := func(t *testing.T) provider {
		t.Helper()
		resp, err := http.Get(base + "/api/v1/auth/providers")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env struct {
			Detail struct {
				Items []provider `json:"items"`
			} `json:"detail"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
			t.Fatal(err)
		}
		for _, p := range env.Detail.Items {
			if p.Name == name {
				return p
			}
		}
		t.Fatalf("%s is not in the public list: %+v", name, env.Detail.Items)
		return provider{}
	}

	b := newBrowser(t, base, 1280, 900)
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	okDialog := func(what string) {
		b.t.Helper()
		b.run(what, 20*time.Second,
			chromedp.WaitVisible(`dialog[open] button[value=ok]`, chromedp.ByQuery),
			chromedp.Click(`dialog[open] button[value=ok]`, chromedp.ByQuery))
	}
	notShown := func(t *testing.T, what, s string) {
		t.Helper()
		var shown bool
		b.eval(pageShows(s), &shown)
		if shown {
			t.Fatalf("%s: the page shows %q", what, s)
		}
	}
	openEdit := func(what string) {
		b.t.Helper()
		b.run(what, 20*time.Second,
			dismissToasts(),
			clickJS(row+` td:last-child button:not(.danger)`),
			chromedp.WaitVisible(`dialog[open] input[name=displayName]`, chromedp.ByQuery))
	}

	step("sign in", func(t *testing.T) {
		b.t = t
		b.run("open /providers", 20*time.Second, chromedp.Navigate(base+"/providers"), chromedp.WaitVisible(`#token`, chromedp.ByID))
		b.run("sign in", 20*time.Second,
			chromedp.SendKeys(`#token`, testToken, chromedp.ByID),
			chromedp.Click(`form.signin button[type=submit]`, chromedp.ByQuery),
			waitJS(`location.pathname === '/providers' && document.querySelector('main h1')?.textContent === 'Sign-in providers'`),
			waitJS(`document.querySelector('.main-nav a[href="/providers"]')?.getAttribute('aria-current') === 'page'`),
			waitJS(`document.querySelector('main p.empty')?.textContent.includes('No providers yet')`))
	})

	step("create a Gitea provider", func(t *testing.T) {
		b.t = t
		form := `form.provider-form `
		b.run("fill the form", 20*time.Second,
			setSelect(form+`select[name=kind]`, "gitea"),
			waitJS(`document.querySelector('`+form+`input[name=url]').closest('.field').textContent.includes('Required: Gitea')`),
			waitJS(`!document.querySelector('`+form+`input[name=connect]').disabled && document.querySelector('`+form+`input[name=connect]').checked`),
			chromedp.SendKeys(form+`input[name=name]`, name, chromedp.ByQuery),
			chromedp.SendKeys(form+`input[name=displayName]`, "Acme Gitea", chromedp.ByQuery),
			chromedp.SendKeys(form+`input[name=url]`, "https://git.example.com", chromedp.ByQuery),
			chromedp.SendKeys(form+`input[name=clientId]`, clientID, chromedp.ByQuery),
			chromedp.SendKeys(form+`input[name=clientSecret]`, secret, chromedp.ByQuery),
			// The callback URL to register is shown before the provider exists.
			waitJS(fmt.Sprintf(`document.querySelector('%s.callback code')?.textContent === %q`, form, callback)))
		b.shot("provider-new")
		b.run("create it", 20*time.Second,
			chromedp.Click(`//button[text()="Create provider"]`, chromedp.BySearch),
			waitJS(`[...document.querySelectorAll('.toast')].some(e => e.textContent.includes('`+name+` created'))`),
			waitJS(fmt.Sprintf(`document.querySelector('%s .callback code')?.textContent === %q`, row, callback)),
			waitJS(`(r => r.textContent.includes('Acme Gitea') && r.textContent.includes('Gitea') && r.textContent.includes('https://git.example.com') &&
				r.textContent.includes('sign-in') && r.textContent.includes('connect accounts'))(document.querySelector('`+row+`'))`),
			waitJS(`document.querySelector('`+form+`input[name=name]').value === '' && document.querySelector('`+form+`input[name=clientSecret]').value === ''`))
		notShown(t, "after creating the provider", secret)

		// The copy button puts the callback URL on the clipboard.
		var copied string
		b.run("copy the callback URL", 20*time.Second,
			cdpbrowser.GrantPermissions([]cdpbrowser.PermissionType{cdpbrowser.PermissionTypeClipboardReadWrite, cdpbrowser.PermissionTypeClipboardSanitizedWrite}).WithOrigin(base),
			dismissToasts(),
			clickJS(row+` .callback button`),
			waitJS(`[...document.querySelectorAll('.toast')].some(e => e.textContent.includes('Callback URL copied'))`),
			chromedp.Evaluate(`navigator.clipboard.readText()`, &copied, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
		if copied != callback {
			t.Errorf("the clipboard holds %q, want %q", copied, callback)
		}

		p := getProvider(t)
		if p.Kind != "gitea" || p.DisplayName != "Acme Gitea" || p.URL != "https://git.example.com" || p.ClientID != clientID ||
			!p.SignIn || !p.Connect || p.CallbackURL != callback || len(p.Scopes) != 0 || len(p.AllowedOrgs) != 0 {
			t.Fatalf("after Create, the API shows %+v", p)
		}
		if pub := publicEntry(t); pub.LoginURL == "" || pub.ConnectURL == "" {
			t.Fatalf("the public list: %+v", pub)
		}
	})

	step("edit the display name, keeping the secret", func(t *testing.T) {
		b.t = t
		before := getProvider(t)
		time.Sleep(5 * time.Millisecond) // updatedAt has millisecond resolution
		openEdit("open the edit dialog")
		var form struct {
			Kind, Name, DisplayName, URL, ClientID, Secret, SecretHint, Callback string
			NameDisabled                                                         bool
		}
		b.eval(`(d => ({kind: d.querySelector('select[name=kind]').value, name: d.querySelector('input[name=name]').value,
			nameDisabled: d.querySelector('input[name=name]').disabled,
			displayName: d.querySelector('input[name=displayName]').value, url: d.querySelector('input[name=url]').value,
			clientID: d.querySelector('input[name=clientId]').value, secret: d.querySelector('input[name=clientSecret]').value,
			secretHint: d.querySelector('input[name=clientSecret]').closest('.field').textContent,
			callback: d.querySelector('.callback code')?.textContent}))(document.querySelector('dialog[open]'))`, &form)
		if form.Kind != "gitea" || form.Name != name || !form.NameDisabled || form.DisplayName != "Acme Gitea" || form.URL != "https://git.example.com" ||
			form.ClientID != clientID || form.Secret != "" || !strings.Contains(form.SecretHint, "keep the stored one") || form.Callback != callback {
			t.Fatalf("the edit dialog shows %+v", form)
		}
		b.run("rename", 20*time.Second,
			clearField(`dialog[open] input[name=displayName]`),
			chromedp.SendKeys(`dialog[open] input[name=displayName]`, "Acme Git", chromedp.ByQuery))
		okDialog("save")
		b.run("renamed", 20*time.Second,
			waitJS(`!document.querySelector('dialog')`),
			waitJS(`[...document.querySelectorAll('.toast')].some(e => e.textContent.includes('`+name+` saved'))`),
			waitJS(`document.querySelector('`+row+` strong')?.textContent === 'Acme Git'`))
		notShown(t, "after the edit", secret)
		p := getProvider(t)
		if p.DisplayName != "Acme Git" || p.URL != before.URL || p.ClientID != clientID || p.Kind != "gitea" || !p.SignIn || !p.Connect ||
			p.UpdatedAt == before.UpdatedAt {
			t.Fatalf("after the edit, the API shows %+v (before: %+v)", p, before)
		}

		// The stored secret is still the one typed at creation: point the
		// provider at the test forge (a PUT without clientSecret, which keeps
		// it as well) and finish a sign-in there: Runnel sends the secret
		// with the code.
		if env := c.do("PUT", "/api/v1/auth/providers/"+name, map[string]any{"url": forge.URL}, nil); env.Code != 0 {
			t.Fatalf("point the provider at the test forge: %+v", env)
		}
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noRedirect.Get(base + "/api/v1/auth/providers/" + name + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		to, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(to.String(), forge.URL+"/login/oauth/authorize?") {
			t.Fatalf("the sign-in starts with %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if to.Query().Get("client_id") != clientID || to.Query().Get("redirect_uri") != callback {
			t.Fatalf("the authorize URL: %s", to)
		}
		resp, err = noRedirect.Get(callback + "?code=code-from-forge&state=" + url.QueryEscape(to.Query().Get("state")))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		select {
		case e := <-exchanges:
			if e.secret != secret || e.clientID != clientID || e.redirect != callback || e.code != "code-from-forge" {
				t.Fatalf("the forge's token endpoint got client %q secret %q redirect %q code %q; want secret %q", e.clientID, e.secret, e.redirect, e.code, secret)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Runnel did not exchange the code at the forge")
		}
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "/signin?error=") {
			t.Fatalf("the refused sign-in answers %d %q", resp.StatusCode, loc)
		}
		if env := c.do("PUT", "/api/v1/auth/providers/"+name, map[string]any{"url": "https://git.example.com"}, nil); env.Code != 0 {
			t.Fatalf("point the provider back: %+v", env)
		}
	})

	step("turn connecting accounts off", func(t *testing.T) {
		b.t = t
		b.open("/providers")
		b.run("wait for the list", 20*time.Second, waitJS(`document.querySelector('`+row+`')?.textContent.includes('connect accounts')`))
		openEdit("open the edit dialog")
		b.run("untick Connect accounts", 20*time.Second,
			waitJS(`document.querySelector('dialog[open] input[name=connect]').checked`),
			chromedp.Click(`dialog[open] input[name=connect]`, chromedp.ByQuery))
		okDialog("save")
		b.run("connect off", 20*time.Second,
			waitJS(`!document.querySelector('dialog')`),
			waitJS(`(r => r.textContent.includes('sign-in') && !r.textContent.includes('connect accounts'))(document.querySelector('`+row+`'))`))
		p := getProvider(t)
		if p.Connect || !p.SignIn || p.DisplayName != "Acme Git" {
			t.Fatalf("after turning connect off, the API shows %+v", p)
		}
		if pub := publicEntry(t); pub.ConnectURL != "" || pub.LoginURL == "" {
			t.Fatalf("the public list after turning connect off: %+v", pub)
		}
	})

	step("the API's refusals, in its words", func(t *testing.T) {
		b.t = t
		// Sign-in off as well: the provider would serve nothing.
		want := c.do("PUT", "/api/v1/auth/providers/"+name, map[string]any{"signIn": false}, nil)
		if want.Code != 400 || want.ErrMsg == "" {
			t.Fatalf("PUT signIn false with connect off: %+v", want)
		}
		openEdit("open the edit dialog")
		b.run("untick Sign in", 20*time.Second, chromedp.Click(`dialog[open] input[name=signIn]`, chromedp.ByQuery))
		okDialog("save")
		b.run("refused in the dialog", 20*time.Second,
			waitJS(fmt.Sprintf(`document.querySelector('dialog[open] .alert.error')?.textContent === %q`, want.ErrMsg)))
		b.shot("provider-refused")
		b.run("cancel", 20*time.Second,
			chromedp.Click(`dialog[open] button[value=""]`, chromedp.ByQuery),
			waitJS(`!document.querySelector('dialog')`))
		if p := getProvider(t); !p.SignIn || p.Connect {
			t.Fatalf("after the refused edit, the API shows %+v", p)
		}

		// An oidc provider cannot connect accounts: the form says so and
		// turns the box off (it comes back for a forge).
		form := `form.provider-form `
		b.run("oidc in the form", 20*time.Second,
			dismissToasts(),
			setSelect(form+`select[name=kind]`, "oidc"),
			waitJS(`(i => i.disabled && !i.checked && i.closest('.field').textContent.includes('signs users in only'))(document.querySelector('`+form+`input[name=connect]'))`),
			waitJS(`document.querySelector('`+form+`input[name=url]').closest('.field').textContent.includes('the issuer')`),
			setSelect(form+`select[name=kind]`, "gitea"),
			waitJS(`(i => !i.disabled && i.checked)(document.querySelector('`+form+`input[name=connect]'))`))

		// A second provider of the same name.
		want = c.do("POST", "/api/v1/auth/providers", map[string]any{"name": name, "kind": "gitea", "url": "https://other.example.com", "clientId": "x"}, nil)
		if want.Code != 409 || want.ErrMsg == "" {
			t.Fatalf("POST a second %s: %+v", name, want)
		}
		b.run("create it twice", 20*time.Second,
			chromedp.SendKeys(form+`input[name=name]`, name, chromedp.ByQuery),
			chromedp.SendKeys(form+`input[name=url]`, "https://other.example.com", chromedp.ByQuery),
			chromedp.SendKeys(form+`input[name=clientId]`, "x", chromedp.ByQuery),
			chromedp.Click(`//button[text()="Create provider"]`, chromedp.BySearch),
			waitJS(fmt.Sprintf(`document.querySelector('%s.alert.error')?.textContent === %q`, form, want.ErrMsg)))
		if p := getProvider(t); p.URL != "https://git.example.com" || p.ClientID != clientID {
			t.Fatalf("after the refused creation, the API shows %+v", p)
		}
	})

	step("phone width", func(t *testing.T) {
		b.t = t
		b.run("phone size", 20*time.Second, emulation.SetDeviceMetricsOverride(390, 844, 2, true))
		b.open("/providers")
		b.run("listed", 20*time.Second, waitJS(`!!document.querySelector('`+row+`')`))
		var overflow bool
		b.eval(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow)
		b.shot("phone-providers")
		b.run("desktop size", 20*time.Second, emulation.ClearDeviceMetricsOverride())
		if overflow {
			t.Errorf("the providers page scrolls sideways on a phone")
		}
	})

	step("delete", func(t *testing.T) {
		b.t = t
		b.open("/providers")
		b.run("delete", 20*time.Second,
			clickJS(row+` button.danger`),
			waitJS(`document.querySelector('dialog[open]')?.textContent.includes('Delete `+name+`?')`))
		okDialog("confirm delete")
		b.run("gone from the page", 20*time.Second,
			waitJS(`[...document.querySelectorAll('.toast')].some(e => e.textContent.includes('`+name+` deleted'))`),
			waitJS(`!document.querySelector('`+row+`') && document.querySelector('main p.empty')?.textContent.includes('No providers yet')`))
		if env := c.do("GET", "/api/v1/auth/providers/"+name, nil, nil); env.Code != 404 {
			t.Fatalf("GET after Delete: %+v", env)
		}
	})

	step("not offered to others", func(t *testing.T) {
		b.t = t
		var u struct {
			UserID string `json:"userId"`
		}
		if env := c.do("POST", "/api/v1/users", map[string]any{"login": "pat"}, &u); env.Code != 0 {
			t.Fatalf("create a user: %+v", env)
		}
		var tok struct {
			Token string `json:"token"`
		}
		if env := c.do("POST", "/api/v1/users/"+u.UserID+"/tokens", map[string]any{"name": "ui", "scopes": []string{"read", "run", "write"}}, &tok); env.Code != 0 {
			t.Fatalf("a token for pat: %+v", env)
		}
		b.run("sign out", 20*time.Second,
			chromedp.Click(`.who button`, chromedp.ByQuery),
			waitJS(`location.pathname === '/signin' && !!document.querySelector('#token')`))
		b.run("sign in as pat", 20*time.Second,
			chromedp.SendKeys(`#token`, tok.Token, chromedp.ByID),
			chromedp.Click(`form.signin button[type=submit]`, chromedp.ByQuery),
			waitJS(`document.querySelector('.who .subject')?.textContent === 'pat'`),
			waitJS(`location.pathname === '/providers' && document.querySelector('main').textContent.includes('Only site admins')`),
			waitJS(`!!document.querySelector('.main-nav a[href="/pipelines"]') && !document.querySelector('.main-nav a[href="/providers"]')`))
		req, _ := http.NewRequest("POST", base+"/api/v1/auth/providers", strings.NewReader(`{"name":"x","kind":"gitea","url":"https://git.example.com","clientId":"x"}`))
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("a user's POST /api/v1/auth/providers: %d", resp.StatusCode)
		}
	})
}

package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/runnel-ci/runnel/internal/signin"
	"github.com/runnel-ci/runnel/internal/testgitea"
)

// browser is a client that keeps cookies and does not follow redirects,
// as a test of a browser's part in a sign-in.
type browser struct {
	t      *testing.T
	c      *http.Client
	origin string
}

func newBrowser(t *testing.T, origin string) *browser {
	return &browser{t: t, origin: origin, c: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// cookie is the browser's session cookie ("" none).
var cookies = map[*browser]string{}

func (b *browser) do(method, rawURL string, body any, sameOrigin bool) (*http.Response, []byte) {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = strings.NewReader(string(data))
	}
	req, err := http.NewRequest(method, rawURL, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if v := cookies[b]; v != "" && strings.HasPrefix(rawURL, b.origin) {
		req.AddCookie(&http.Cookie{Name: signin.CookieName, Value: v})
	}
	if sameOrigin {
		req.Header.Set("Origin", b.origin)
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	for _, c := range res.Cookies() {
		if c.Name == signin.CookieName {
			if c.MaxAge < 0 {
				delete(cookies, b)
			} else {
				if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
					b.t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/", c)
				}
				cookies[b] = c.Value
			}
		}
	}
	return res, data
}

// redirected expects a 302 and returns its Location.
func (b *browser) redirected(res *http.Response, body []byte) *url.URL {
	b.t.Helper()
	if res.StatusCode != http.StatusFound {
		b.t.Fatalf("status %d, want a redirect: %s", res.StatusCode, body)
	}
	u, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

// TestSignInWithGitea signs users in through a real Gitea, both as a forge
// (its user API) and as an OpenID Connect provider (ID token checked
// against its JWKS), and checks the refusals: a wrong state, a replayed
// callback, a replayed code, a user outside the allowed organisation.
func TestSignInWithGitea(t *testing.T) {
	g := testgitea.Start(t)
	e := newEnv(t)
	admin := withToken(e.addToken("root", "admin_root", "admin", nil))
	g.CreateUser(t, "gina", "gina-pass-123", "gina@example.com")
	g.CreateUser(t, "olaf", "olaf-pass-123", "olaf@example.com")
	g.CreateOrg(t, "acme")
	g.AddOrgMember(t, "acme", "gina")

	base := e.http.URL
	callback := base + "/api/v1/auth/providers/gitea/callback"
	id, secret := g.CreateOAuthApp(t, "runnel", []string{callback})
	d := e.do("POST", "/api/v1/auth/providers", map[string]any{"name": "gitea", "kind": "gitea", "displayName": "Acme Gitea",
		"url": g.URL, "clientId": id, "clientSecret": secret, "allowedOrgs": []string{"acme"}}, admin).must(t, http.StatusCreated).detail()
	if d["callbackUrl"] != callback || d["clientSecret"] != nil {
		t.Fatalf("provider: %v", d)
	}
	e.do("POST", "/api/v1/auth/providers", map[string]any{"name": "x", "kind": "gitea", "url": g.URL, "clientId": "c"}).
		mustErr(t, http.StatusForbidden, "needs a site admin")
	// Anyone may list the providers, without their configuration.
	l := e.do("GET", "/api/v1/auth/providers", nil, withToken("")).must(t, http.StatusOK).detail()
	item := l["items"].([]any)[0].(map[string]any)
	if item["displayName"] != "Acme Gitea" || item["loginUrl"] != "/api/v1/auth/providers/gitea/login" || item["clientId"] != nil {
		t.Fatalf("public list: %v", item)
	}

	b := newBrowser(t, base)
	start := func(provider string) *url.URL {
		t.Helper()
		to := b.redirected(b.do("GET", base+"/api/v1/auth/providers/"+provider+"/login?returnTo=/pipelines", nil, false))
		q := to.Query()
		if !strings.HasPrefix(to.String(), g.URL+"/login/oauth/authorize?") || q.Get("code_challenge_method") != "S256" ||
			q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("redirect_uri") == "" {
			t.Fatalf("login redirect: %s", to)
		}
		return to
	}
	refused := func(cb string, want string) {
		t.Helper()
		to := b.redirected(b.do("GET", cb, nil, false))
		if to.Path != "/signin" || !strings.Contains(to.Query().Get("error"), want) {
			t.Fatalf("callback %s: went to %s, want /signin with an error saying %q", cb, to, want)
		}
	}

	// A wrong state is refused and spends nothing; the right one signs in.
	cb := g.Authorize(t, start("gitea").String(), "gina", "gina-pass-123")
	q := cb.Query()
	wrong := *cb
	wq := cb.Query()
	wq.Set("state", q.Get("state")+"x")
	wrong.RawQuery = wq.Encode()
	refused(base+wrong.RequestURI(), "unknown, already used")
	if to := b.redirected(b.do("GET", base+cb.RequestURI(), nil, false)); to.String() != "/pipelines" {
		t.Fatalf("after the sign-in: went to %s, want /pipelines", to)
	}
	if cookies[b] == "" {
		t.Fatal("no session cookie after the sign-in")
	}
	// The same callback again: its state was used.
	refused(base+cb.RequestURI(), "already used")
	res, body := b.do("GET", base+"/api/v1/me", nil, false)
	var me struct {
		Detail struct {
			Subject string `json:"subject"`
			User    struct {
				Login, Email string
			} `json:"user"`
		} `json:"detail"`
	}
	if res.StatusCode != 200 || json.Unmarshal(body, &me) != nil || me.Detail.Subject != "gina" || me.Detail.User.Email != "gina@example.com" {
		t.Fatalf("me with the session: %d %s", res.StatusCode, body)
	}

	// A change with the cookie needs the page's own origin.
	res, body = b.do("POST", base+"/api/v1/projects", map[string]any{"projectId": "ginas"}, false)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "header Origin") {
		t.Fatalf("a change without Origin: %d %s", res.StatusCode, body)
	}
	if res, body = b.do("POST", base+"/api/v1/projects", map[string]any{"projectId": "ginas"}, true); res.StatusCode != http.StatusCreated {
		t.Fatalf("a change from the page: %d %s", res.StatusCode, body)
	}

	// A replayed code: a new sign-in's state with the old code.
	again := start("gitea")
	rq := cb.Query()
	rq.Set("state", again.Query().Get("state"))
	replay := *cb
	replay.RawQuery = rq.Encode()
	refused(base+replay.RequestURI(), "")

	// Signing out ends the session.
	if res, body = b.do("DELETE", base+"/api/v1/auth/session", nil, true); res.StatusCode != 200 {
		t.Fatalf("sign out: %d %s", res.StatusCode, body)
	}
	old := cookies[b]
	if old != "" {
		t.Fatal("the cookie stays after signing out")
	}

	// A user outside the allowed organisation is refused.
	cb = g.Authorize(t, start("gitea").String(), "olaf", "olaf-pass-123")
	refused(base+cb.RequestURI(), "allowedOrgs")
	if _, err := e.st.UserByLogin(context.Background(), "olaf"); err == nil {
		t.Fatal("a refused sign-in provisioned a user")
	}

	// OpenID Connect against Gitea's issuer: the ID token is checked, the
	// groups claim admits.
	oidcCallback := base + "/api/v1/auth/providers/gitea-oidc/callback"
	id2, secret2 := g.CreateOAuthApp(t, "runnel-oidc", []string{oidcCallback})
	e.do("POST", "/api/v1/auth/providers", map[string]any{"name": "gitea-oidc", "kind": "oidc", "url": g.URL, "clientId": id2,
		"clientSecret": secret2, "scopes": []string{"openid", "profile", "email", "groups"}, "allowedOrgs": []string{"acme"}}, admin).
		must(t, http.StatusCreated)
	to := start("gitea-oidc")
	if to.Query().Get("nonce") == "" || !strings.Contains(to.Query().Get("scope"), "openid") {
		t.Fatalf("OIDC login redirect: %s", to)
	}
	cb = g.Authorize(t, to.String(), "gina", "gina-pass-123")
	b.redirected(b.do("GET", base+cb.RequestURI(), nil, false))
	res, body = b.do("GET", base+"/api/v1/me", nil, false)
	if res.StatusCode != 200 || !strings.Contains(string(body), `"email":"gina@example.com"`) {
		t.Fatalf("me after the OIDC sign-in: %d %s", res.StatusCode, body)
	}
	cb = g.Authorize(t, start("gitea-oidc").String(), "olaf", "olaf-pass-123")
	refused(base+cb.RequestURI(), "allowedOrgs")

	// The sessions are listed and revocable; the audit log has the
	// provider's creation.
	sl := e.do("GET", "/api/v1/audit?action=POST+/api/v1/auth/providers", nil, admin).must(t, 200).detail()
	if sl["total"] != 2.0 {
		t.Errorf("audit entries of the providers' creation: %v", sl)
	}
	// Each sign-in is in it, one that created its user with 201. Identities
	// are per provider: the OpenID Connect sign-in is another user (gina-2),
	// never merged by name or email.
	for _, actor := range []string{"gina", "gina-2"} {
		si := e.do("GET", "/api/v1/audit?actor="+actor, nil, admin).must(t, 200).detail()
		var statuses []string
		for _, it := range si["items"].([]any) {
			m := it.(map[string]any)
			if m["action"] == "GET /api/v1/auth/providers/{name}/callback" {
				statuses = append(statuses, fmt.Sprint(m["status"]))
			}
		}
		if strings.Join(statuses, ",") != "201" {
			t.Errorf("%s's sign-ins in the audit log: %v", actor, statuses)
		}
	}
}

// TestCLIGrant: the command line's code works once, and only with the
// verifier of the challenge the consent named.
func TestCLIGrant(t *testing.T) {
	e := newEnv(t)
	verifier := "a-verifier-only-the-command-line-holds-0123456789"
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	grant := func() string {
		t.Helper()
		d := e.do("POST", "/api/v1/auth/cli/grant", map[string]any{"challenge": challenge, "port": 43210}).must(t, http.StatusOK).detail()
		u, err := url.Parse(d["redirect"].(string))
		if err != nil || u.Host != "127.0.0.1:43210" || u.Path != "/callback" {
			t.Fatalf("redirect %v", d["redirect"])
		}
		return u.Query().Get("code")
	}
	e.do("POST", "/api/v1/auth/cli/grant", map[string]any{"challenge": "short", "port": 43210}).mustErr(t, 400, "body.challenge")
	e.do("POST", "/api/v1/auth/cli/grant", map[string]any{"challenge": challenge, "port": 80}).mustErr(t, 400, "body.port")
	code := grant()
	e.do("POST", "/api/v1/auth/cli/token", map[string]any{"code": code, "verifier": "wrong"}, withToken("")).mustErr(t, 401, "body.verifier")
	// The code was spent by that attempt.
	e.do("POST", "/api/v1/auth/cli/token", map[string]any{"code": code, "verifier": verifier}, withToken("")).mustErr(t, 401, "already used")
	code = grant()
	d := e.do("POST", "/api/v1/auth/cli/token", map[string]any{"code": code, "verifier": verifier, "name": "laptop"}, withToken("")).must(t, http.StatusCreated).detail()
	tok, _ := d["token"].(string)
	if !strings.HasPrefix(tok, "rnl_") || d["name"] != "laptop" {
		t.Fatalf("token: %v", d)
	}
	me := e.do("GET", "/api/v1/me", nil, withToken(tok)).must(t, http.StatusOK).detail()
	if me["subject"] != "user_alice" {
		t.Fatalf("the command line's token is %v's", me["subject"])
	}
}

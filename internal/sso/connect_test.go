package sso

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
)

// forgeApp is a forge's OAuth application over real HTTP, as connecting an
// account uses it: the authorization endpoint (it records the request and
// redirects back at once, as if the user had consented), the token endpoint
// for the authorization_code grant (client credentials, redirect URI, PKCE
// S256, one use) and the refresh_token grant (refresh tokens rotate: one
// use each), and the user APIs of GitHub (/api/v3), GitLab (/api/v4), Gitea
// (/api/v1) and Bitbucket (/api/2.0).
type forgeApp struct {
	t                      *testing.T
	srv                    *httptest.Server
	clientID, clientSecret string

	mu sync.Mutex
	// grants are the authorization codes handed out, by code.
	grants map[string]url.Values
	// access and refresh are the live tokens.
	access, refresh map[string]bool
	// authorizations and tokenForms are what the endpoints received.
	authorizations []url.Values
	tokenForms     []url.Values
	// memberships counts reads of organisations, groups or workspaces.
	memberships int
	// expiresIn is the lifetime the token endpoint gives (0: it gives none).
	expiresIn int
	// refuseRefresh, when set, is how the token endpoint answers a refresh:
	// status and JSON body.
	refuseRefresh *refusal
	// keepRefresh: a refresh answers without a new refresh token.
	keepRefresh bool
}

type refusal struct {
	status int
	body   map[string]string
}

func newForgeApp(t *testing.T) *forgeApp {
	t.Helper()
	f := &forgeApp{t: t, clientID: "connect-client", clientSecret: "connect-Secret_1", expiresIn: 7200,
		grants: map[string]url.Values{}, access: map[string]bool{}, refresh: map[string]bool{}}
	mux := http.NewServeMux()
	for _, p := range []string{"/login/oauth/authorize", "/oauth/authorize", "/site/oauth2/authorize"} {
		mux.HandleFunc("GET "+p, f.authorize)
	}
	for _, p := range []string{"/login/oauth/access_token", "/oauth/token", "/site/oauth2/access_token"} {
		mux.HandleFunc("POST "+p, f.token)
	}
	for _, base := range []string{"/api/v1", "/api/v3", "/api/v4", "/api/2.0"} {
		mux.HandleFunc("GET "+base+"/", f.user)
	}
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *forgeApp) provider(kind Kind) Provider {
	return Provider{Name: "conn-" + string(kind), Kind: kind, ClientID: f.clientID, ClientSecret: f.clientSecret, URL: f.srv.URL}
}

func (f *forgeApp) client() *Client { return New(WithHTTPClient(f.srv.Client())) }

func (f *forgeApp) set(change func(f *forgeApp)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// forms returns the token requests received of grant type grant.
func (f *forgeApp) forms(grant string) []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []url.Values
	for _, v := range f.tokenForms {
		if v.Get("grant_type") == grant {
			out = append(out, v)
		}
	}
	return out
}

func newTokenValue(prefix string) string { return prefix + strings.ToLower(rand.Text()) }

func (f *forgeApp) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.authorizations = append(f.authorizations, q)
	f.mu.Unlock()
	if q.Get("response_type") != "code" || q.Get("client_id") != f.clientID || q.Get("code_challenge_method") != "S256" ||
		len(q.Get("code_challenge")) != 43 || q.Get("state") == "" || q.Get("redirect_uri") == "" {
		http.Error(w, "bad authorization request", 400)
		return
	}
	code := newTokenValue("code-")
	f.mu.Lock()
	f.grants[code] = q
	f.mu.Unlock()
	back, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", 400)
		return
	}
	bq := back.Query()
	bq.Set("code", code)
	bq.Set("state", q.Get("state"))
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (f *forgeApp) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	form := url.Values{}
	for k, v := range r.PostForm {
		form[k] = slices.Clone(v)
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenForms = append(f.tokenForms, form)
	if id != f.clientID || secret != f.clientSecret {
		writeJSON(w, 401, map[string]string{"error": "invalid_client", "error_description": "client authentication failed"})
		return
	}
	resp := map[string]any{"token_type": "bearer"}
	switch form.Get("grant_type") {
	case "authorization_code":
		g := f.grants[form.Get("code")]
		delete(f.grants, form.Get("code"))
		switch {
		case g == nil:
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "unknown or used authorization code"})
			return
		case g.Get("redirect_uri") != form.Get("redirect_uri"):
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "redirect_uri does not match"})
			return
		case s256(form.Get("code_verifier")) != g.Get("code_challenge"):
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "failed PKCE code challenge"})
			return
		}
		resp["scope"] = g.Get("scope")
	case "refresh_token":
		if f.refuseRefresh != nil {
			writeJSON(w, f.refuseRefresh.status, f.refuseRefresh.body)
			return
		}
		rt := form.Get("refresh_token")
		if !f.refresh[rt] {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "refresh token revoked"})
			return
		}
		if !f.keepRefresh {
			delete(f.refresh, rt) // rotated
		}
	default:
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	access := newTokenValue("acc-")
	f.access[access] = true
	resp["access_token"] = access
	if !(form.Get("grant_type") == "refresh_token" && f.keepRefresh) {
		rt := newTokenValue("ref-")
		f.refresh[rt] = true
		resp["refresh_token"] = rt
	}
	if f.expiresIn > 0 {
		resp["expires_in"] = f.expiresIn
	}
	writeJSON(w, 200, resp)
}

func (f *forgeApp) user(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	valid := ok && f.access[tok]
	if strings.Contains(r.URL.Path, "/orgs") || strings.Contains(r.URL.Path, "/groups") || strings.Contains(r.URL.Path, "/workspaces") {
		f.memberships++
	}
	f.mu.Unlock()
	if !valid {
		writeJSON(w, 401, map[string]string{"message": "bad credentials"})
		return
	}
	emails := []map[string]any{{"email": "dana@example.com", "primary": true, "verified": true}}
	switch r.URL.Path {
	case "/api/v3/user":
		writeJSON(w, 200, map[string]any{"id": 4242, "login": "dana", "name": "Dana", "email": nil, "avatar_url": "https://avatars.example.com/dana"})
	case "/api/v1/user":
		writeJSON(w, 200, map[string]any{"id": 4242, "login": "dana", "full_name": "Dana", "email": "dana@example.com"})
	case "/api/v3/user/emails", "/api/v1/user/emails":
		writeJSON(w, 200, emails)
	case "/api/v4/user":
		writeJSON(w, 200, map[string]any{"id": 4242, "username": "dana", "name": "Dana", "email": "dana@example.com",
			"confirmed_at": "2024-01-02T03:04:05Z"})
	case "/api/2.0/user":
		writeJSON(w, 200, map[string]any{"uuid": "{6b1c0000-0000-4000-8000-000000004242}", "nickname": "dana", "display_name": "Dana"})
	case "/api/2.0/user/emails":
		writeJSON(w, 200, map[string]any{"values": []map[string]any{{"email": "dana@example.com", "is_primary": true, "is_confirmed": true}}})
	default:
		writeJSON(w, 404, map[string]string{"message": "not found"})
	}
}

// connectAuthorize plays the browser: BeginConnect, then the forge's
// authorization endpoint, which redirects back with a code and the state.
func connectAuthorize(t *testing.T, c *Client, p Provider) (authURL string, pending Pending, state, code string) {
	t.Helper()
	authURL, pending, err := c.BeginConnect(context.Background(), p, callback)
	if err != nil {
		t.Fatalf("BeginConnect: %v", err)
	}
	resp, err := browser.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorization endpoint: HTTP %d, want a redirect", resp.StatusCode)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(back.String(), callback+"?") {
		t.Fatalf("redirected to %q, want the callback", resp.Header.Get("Location"))
	}
	return authURL, pending, back.Query().Get("state"), back.Query().Get("code")
}

func TestConnectScopes(t *testing.T) {
	for kind, want := range map[Kind][]string{
		KindGitHub:    {"repo", "admin:repo_hook", "read:user", "user:email"},
		KindGitLab:    {"api", "read_user"},
		KindGitea:     {"write:repository", "write:user", "read:organization"},
		KindBitbucket: nil,
		KindOIDC:      nil,
	} {
		if got := ConnectScopes(kind); !slices.Equal(got, want) {
			t.Errorf("ConnectScopes(%s) = %q, want %q", kind, got, want)
		}
	}
}

// TestConnectFlow connects an account at each kind of forge: the
// authorization URL asks for the connect scopes (not the provider's sign-in
// scopes) with PKCE S256 and the state; FinishConnect exchanges the code
// with the verifier and returns the account and its tokens, expiry
// included. The provider's admission rules play no part.
func TestConnectFlow(t *testing.T) {
	for _, tc := range []struct {
		kind          Kind
		authPath      string
		tokenBasic    bool // the client authenticates with HTTP basic
		subject       string
		wantScopeSent bool
	}{
		{KindGitHub, "/login/oauth/authorize", false, "4242", true},
		{KindGitLab, "/oauth/authorize", false, "4242", true},
		{KindGitea, "/login/oauth/authorize", false, "4242", true},
		{KindBitbucket, "/site/oauth2/authorize", true, "{6b1c0000-0000-4000-8000-000000004242}", false},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			f := newForgeApp(t)
			c := f.client()
			p := f.provider(tc.kind)
			// Sign-in settings that connecting ignores: its own scopes
			// (openid would even make Gitea's sign-in OpenID Connect) and
			// admission rules the account does not meet.
			p.Scopes = []string{"openid", "read:user"}
			p.AllowedOrgs = []string{"nobody-is-a-member"}
			p.AllowedDomains = []string{"elsewhere.example"}

			authURL, pending, state, code := connectAuthorize(t, c, p)
			if pending.Provider != p.Name || pending.State == "" || pending.Verifier == "" {
				t.Fatalf("pending %+v", pending)
			}
			u, err := url.Parse(authURL)
			if err != nil {
				t.Fatal(err)
			}
			if got := u.Scheme + "://" + u.Host + u.Path; got != f.srv.URL+tc.authPath {
				t.Errorf("authorization endpoint %s, want %s", got, f.srv.URL+tc.authPath)
			}
			q := u.Query()
			for k, want := range map[string]string{
				"response_type": "code", "client_id": f.clientID, "redirect_uri": callback, "state": pending.State,
				"code_challenge": s256(pending.Verifier), "code_challenge_method": "S256", "nonce": "",
				"scope": strings.Join(ConnectScopes(tc.kind), " "),
			} {
				if got := q.Get(k); got != want {
					t.Errorf("authorization URL: %s = %q, want %q", k, got, want)
				}
			}
			if q.Has("scope") != tc.wantScopeSent {
				t.Errorf("authorization URL has scope: %v, want %v", q.Has("scope"), tc.wantScopeSent)
			}
			if state != pending.State {
				t.Fatalf("the forge sent back state %q, want %q", state, pending.State)
			}

			before := time.Now()
			id, tok, err := c.FinishConnect(context.Background(), p, pending, state, code, callback)
			if err != nil {
				t.Fatalf("FinishConnect: %v", err)
			}
			if id.Provider != p.Name || id.Subject != tc.subject || id.Login != "dana" {
				t.Errorf("identity %+v", *id)
			}
			if !strings.HasPrefix(tok.AccessToken, "acc-") || !strings.HasPrefix(tok.RefreshToken, "ref-") {
				t.Errorf("token: access %q refresh %q", tok.AccessToken, tok.RefreshToken)
			}
			if lo, hi := before.Add(7200*time.Second-time.Second), time.Now().Add(7200*time.Second+time.Second); tok.Expiry.Before(lo) || tok.Expiry.After(hi) {
				t.Errorf("token expires %v, want about two hours from now (expires_in 7200)", tok.Expiry)
			}
			forms := f.forms("authorization_code")
			if len(forms) != 1 {
				t.Fatalf("%d code exchanges, want 1", len(forms))
			}
			if got := forms[0]; got.Get("code") != code || got.Get("code_verifier") != pending.Verifier || got.Get("redirect_uri") != callback {
				t.Errorf("code exchange posted %v", got)
			}
			if basic := forms[0].Get("client_secret") == ""; basic != tc.tokenBasic {
				t.Errorf("client authenticated with basic: %v, want %v", basic, tc.tokenBasic)
			}
			f.mu.Lock()
			m := f.memberships
			f.mu.Unlock()
			if m != 0 {
				t.Errorf("memberships read %d times: admission rules do not apply to connecting", m)
			}
		})
	}
}

// TestFinishConnectRefuses: a callback that does not belong to the
// connection started is ErrUnauthenticated, and no code is exchanged.
func TestFinishConnectRefuses(t *testing.T) {
	f := newForgeApp(t)
	c := f.client()
	p := f.provider(KindGitea)
	_, pending, state, code := connectAuthorize(t, c, p)
	for _, bad := range []string{"", "forged", state + "x", state[:len(state)-1]} {
		_, _, err := c.FinishConnect(context.Background(), p, pending, bad, code, callback)
		wantErr(t, err, runnel.ErrUnauthenticated, "state does not match", "start again")
	}
	_, _, err := c.FinishConnect(context.Background(), p, Pending{}, state, code, callback)
	wantErr(t, err, runnel.ErrUnauthenticated, "no connection with provider", "is pending")
	other := f.provider(KindGitHub)
	_, _, err = c.FinishConnect(context.Background(), other, pending, state, code, callback)
	wantErr(t, err, runnel.ErrUnauthenticated, "no connection with provider")
	_, _, err = c.FinishConnect(context.Background(), p, pending, state, "", callback)
	wantErr(t, err, runnel.ErrUnauthenticated, "no authorization code")
	if n := len(f.forms("authorization_code")); n != 0 {
		t.Errorf("token endpoint called %d times for callbacks that do not check", n)
	}

	// The code is still good; once used, it is refused.
	if _, _, err := c.FinishConnect(context.Background(), p, pending, state, code, callback); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.FinishConnect(context.Background(), p, pending, state, code, callback)
	wantErr(t, err, runnel.ErrUnauthenticated, "refused the authorization code")

	// Another verifier than the one the challenge was made of.
	_, pending, state, code = connectAuthorize(t, c, p)
	pending.Verifier = strings.Repeat("v", 50)
	_, _, err = c.FinishConnect(context.Background(), p, pending, state, code, callback)
	wantErr(t, err, runnel.ErrUnauthenticated, "failed PKCE code challenge")
}

// TestBeginConnectRefusesOIDC: accounts connect through forges; an OpenID
// Connect provider signs users in only.
func TestBeginConnectRefusesOIDC(t *testing.T) {
	c := New()
	p := Provider{Name: "corp", Kind: KindOIDC, ClientID: "id", URL: "https://login.example.com"}
	_, _, err := c.BeginConnect(context.Background(), p, callback)
	wantErr(t, err, runnel.ErrInvalid, `provider "corp" is an OpenID Connect provider, not a forge`)

	// A misconfigured forge provider is the server's configuration.
	_, _, err = c.BeginConnect(context.Background(), Provider{Name: "g", Kind: KindGitea, ClientID: "id"}, callback)
	wantErr(t, err, runnel.ErrUnavailable, "misconfigured", "url")
	_, _, err = c.BeginConnect(context.Background(), Provider{Name: "gh", Kind: KindGitHub, ClientID: "id", ClientSecret: "s"}, "/relative")
	wantErr(t, err, runnel.ErrInvalid, "redirectURL")
}

// TestRefresh exchanges a refresh token: grant_type=refresh_token is posted
// with the client's credentials; a refused refresh token is
// ErrUnauthenticated saying to connect the account again.
func TestRefresh(t *testing.T) {
	for _, kind := range []Kind{KindGitHub, KindGitLab, KindGitea, KindBitbucket} {
		t.Run(string(kind), func(t *testing.T) {
			f := newForgeApp(t)
			c := f.client()
			p := f.provider(kind)
			_, pending, state, code := connectAuthorize(t, c, p)
			_, tok, err := c.FinishConnect(context.Background(), p, pending, state, code, callback)
			if err != nil {
				t.Fatal(err)
			}
			f.set(func(f *forgeApp) { f.expiresIn = 3600 })
			before := time.Now()
			fresh, err := c.Refresh(context.Background(), p, tok.RefreshToken)
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if fresh.AccessToken == tok.AccessToken || fresh.RefreshToken == tok.RefreshToken || !strings.HasPrefix(fresh.RefreshToken, "ref-") {
				t.Errorf("refreshed token: access %q refresh %q (old %q, %q)", fresh.AccessToken, fresh.RefreshToken, tok.AccessToken, tok.RefreshToken)
			}
			if lo, hi := before.Add(3599*time.Second), time.Now().Add(3601*time.Second); fresh.Expiry.Before(lo) || fresh.Expiry.After(hi) {
				t.Errorf("refreshed token expires %v, want about an hour from now", fresh.Expiry)
			}
			forms := f.forms("refresh_token")
			if len(forms) != 1 {
				t.Fatalf("%d refresh requests, want 1", len(forms))
			}
			if got := forms[0].Get("refresh_token"); got != tok.RefreshToken {
				t.Errorf("posted refresh_token %q, want %q", got, tok.RefreshToken)
			}
			if forms[0].Has("code") || forms[0].Has("code_verifier") {
				t.Errorf("a refresh posted %v", forms[0])
			}

			// The old refresh token was rotated away: the forge refuses it.
			_, err = c.Refresh(context.Background(), p, tok.RefreshToken)
			wantErr(t, err, runnel.ErrUnauthenticated, fmt.Sprintf("provider %q refused to refresh", p.Name), "invalid_grant", "connect the account again")
		})
	}
}

// TestRefreshKeepsRefreshToken: a forge that answers a refresh without a
// new refresh token leaves the one given in the answer.
func TestRefreshKeepsRefreshToken(t *testing.T) {
	f := newForgeApp(t)
	c := f.client()
	p := f.provider(KindGitLab)
	_, pending, state, code := connectAuthorize(t, c, p)
	_, tok, err := c.FinishConnect(context.Background(), p, pending, state, code, callback)
	if err != nil {
		t.Fatal(err)
	}
	f.set(func(f *forgeApp) { f.keepRefresh = true })
	fresh, err := c.Refresh(context.Background(), p, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.RefreshToken != tok.RefreshToken || fresh.AccessToken == tok.AccessToken {
		t.Errorf("refreshed: access %q refresh %q, want a new access token and the same refresh token %q", fresh.AccessToken, fresh.RefreshToken, tok.RefreshToken)
	}
}

func TestRefreshErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    refusal
		kind error
		want []string
	}{
		{"invalid_grant", refusal{400, map[string]string{"error": "invalid_grant", "error_description": "The refresh token is invalid"}},
			runnel.ErrUnauthenticated, []string{"refused to refresh", "invalid_grant The refresh token is invalid", "connect the account again"}},
		// GitHub answers a bad refresh token with HTTP 200.
		{"github 200", refusal{200, map[string]string{"error": "bad_refresh_token", "error_description": "The refresh token passed is incorrect or expired."}},
			runnel.ErrUnauthenticated, []string{"bad_refresh_token", "connect the account again"}},
		{"server error", refusal{502, map[string]string{"error": "temporarily_unavailable"}},
			runnel.ErrUpstream, []string{"refreshing the account's token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newForgeApp(t)
			f.refuseRefresh = &tc.r
			p := f.provider(KindGitHub)
			_, err := f.client().Refresh(context.Background(), p, "ref-some-token")
			wantErr(t, err, tc.kind, tc.want...)
			if strings.Contains(err.Error(), "ref-some-token") || strings.Contains(err.Error(), f.clientSecret) {
				t.Errorf("error %q shows the refresh token or the client secret", err)
			}
		})
	}

	// A forge that does not answer within the context's time.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm() // the body read, the server notices the client leave
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer hang.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := New(WithHTTPClient(hang.Client())).Refresh(ctx, Provider{Name: "g", Kind: KindGitea, ClientID: "id", URL: hang.URL}, "ref-x")
	if err == nil || errors.Is(err, runnel.ErrUnauthenticated) {
		t.Errorf("refresh against a forge that hangs: %v, want an error that is not ErrUnauthenticated", err)
	}
}

// TestAPIBase: the REST API's base of each kind, public service or own
// server, as the sign-in and connect flows use it.
func TestAPIBase(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		url  string
		want string
	}{
		{KindGitHub, "", "https://api.github.com"},
		{KindGitHub, "https://github.com", "https://api.github.com"},
		{KindGitHub, "https://GitHub.com/", "https://api.github.com"},
		{KindGitHub, "https://ghe.example.com", "https://ghe.example.com/api/v3"},
		{KindGitHub, "https://ghe.example.com/", "https://ghe.example.com/api/v3"},
		{KindGitLab, "", "https://gitlab.com/api/v4"},
		{KindGitLab, "https://gitlab.com", "https://gitlab.com/api/v4"},
		{KindGitLab, "https://gl.example.com/", "https://gl.example.com/api/v4"},
		{KindGitea, "https://gitea.example.com", "https://gitea.example.com/api/v1"},
		{KindGitea, "https://gitea.example.com/sub/", "https://gitea.example.com/sub/api/v1"},
		{KindBitbucket, "", "https://api.bitbucket.org/2.0"},
		{KindBitbucket, "https://bitbucket.org/", "https://api.bitbucket.org/2.0"},
		{KindBitbucket, "https://bb.example.com", "https://bb.example.com/api/2.0"},
		{KindOIDC, "https://login.example.com", ""},
	} {
		p := Provider{Name: "x", Kind: tc.kind, ClientID: "id", ClientSecret: "secret", URL: tc.url}
		if got := p.APIBase(); got != tc.want {
			t.Errorf("%s %q: APIBase = %q, want %q", tc.kind, tc.url, got, tc.want)
		}
		if tc.kind == KindOIDC {
			continue
		}
		// The flows call the same API.
		f, err := New().flow(context.Background(), p.forConnect(), callback)
		if err != nil {
			t.Fatal(err)
		}
		if f.apiBase != tc.want {
			t.Errorf("%s %q: the flow calls %q, APIBase says %q", tc.kind, tc.url, f.apiBase, tc.want)
		}
	}
}

// Connections and refreshes run at once through one Client.
func TestConcurrentConnects(t *testing.T) {
	f := newForgeApp(t)
	c := f.client()
	var wg sync.WaitGroup
	for i := range 12 {
		kind := []Kind{KindGitHub, KindGitLab, KindGitea, KindBitbucket}[i%4]
		wg.Go(func() {
			p := f.provider(kind)
			authURL, pending, err := c.BeginConnect(context.Background(), p, callback)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := browser.Get(authURL)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			back, _ := url.Parse(resp.Header.Get("Location"))
			_, tok, err := c.FinishConnect(context.Background(), p, pending, back.Query().Get("state"), back.Query().Get("code"), callback)
			if err == nil {
				_, err = c.Refresh(context.Background(), p, tok.RefreshToken)
			}
			if err != nil {
				t.Errorf("%s: %v", kind, err)
			}
		})
	}
	wg.Wait()
}

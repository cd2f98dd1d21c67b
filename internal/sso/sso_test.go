package sso

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
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

const callback = "https://runnel.example/api/v1/sso/fake/callback"

// browser follows no redirect: it reads where the provider sends it.
var browser = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorize plays the browser: Begin, then the provider's authorization
// endpoint, which redirects back with a code and the state.
func authorize(t *testing.T, c *Client, p Provider) (pending Pending, state, code string) {
	t.Helper()
	pending, state, code, err := tryAuthorize(c, p)
	if err != nil {
		t.Fatal(err)
	}
	return pending, state, code
}

func tryAuthorize(c *Client, p Provider) (pending Pending, state, code string, err error) {
	authURL, pending, err := c.Begin(context.Background(), p, callback)
	if err != nil {
		return pending, "", "", fmt.Errorf("Begin: %w", err)
	}
	resp, err := browser.Get(authURL)
	if err != nil {
		return pending, "", "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return pending, "", "", fmt.Errorf("authorization endpoint: HTTP %d, want a redirect", resp.StatusCode)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(back.String(), callback+"?") {
		return pending, "", "", fmt.Errorf("redirected to %q, want the callback", resp.Header.Get("Location"))
	}
	if err := CallbackError(p.Name, back.Query()); err != nil {
		return pending, "", "", err
	}
	return pending, back.Query().Get("state"), back.Query().Get("code"), nil
}

// signIn runs a whole sign-in.
func signIn(t *testing.T, c *Client, p Provider) (*Identity, error) {
	t.Helper()
	pending, state, code := authorize(t, c, p)
	return c.Finish(context.Background(), p, pending, state, code, callback)
}

func newClient(f *fakeProvider) *Client {
	return New(WithHTTPClient(f.srv.Client()))
}

func wantErr(t *testing.T, err, kind error, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Errorf("error %q is not %v", err, kind)
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

func TestOIDCSignIn(t *testing.T) {
	f := newFakeProvider(t)
	c := newClient(f)
	p := f.provider(KindOIDC)
	p.AllowedOrgs = []string{"ACME"}
	p.AllowedDomains = []string{"example.com"}

	authURL, pending, err := c.Begin(context.Background(), p, callback)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"state": pending.State, "nonce": pending.Nonce, "verifier": pending.Verifier} {
		if len(v) < 43 || strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Errorf("%s %q: want at least 43 URL-safe characters (256 bits)", name, v)
		}
	}
	q, _ := url.Parse(authURL)
	for k, want := range map[string]string{"state": pending.State, "nonce": pending.Nonce, "code_challenge": s256(pending.Verifier),
		"code_challenge_method": "S256", "scope": "openid profile email", "redirect_uri": callback, "client_id": f.clientID} {
		if got := q.Query().Get(k); got != want {
			t.Errorf("authorization URL: %s = %q, want %q", k, got, want)
		}
	}

	id, err := signIn(t, c, p)
	if err != nil {
		t.Fatal(err)
	}
	want := &Identity{Provider: p.Name, Subject: "1001", Login: "alice", Name: "Alice Example", Email: "alice@example.com",
		EmailVerified: true, AvatarURL: "https://avatars.example.com/u/1001", Orgs: []string{"acme", "Tools"}}
	assertIdentity(t, id, want)
	if n := f.callCount("/userinfo"); n != 0 {
		t.Errorf("userinfo called %d times although the ID token has every claim", n)
	}

	// A second sign-in reuses the discovery document and the key set.
	if _, err := signIn(t, c, p); err != nil {
		t.Fatal(err)
	}
	if n := f.callCount("/.well-known/openid-configuration"); n != 1 {
		t.Errorf("discovery read %d times, want 1 (cached)", n)
	}
	if n := f.callCount("/jwks"); n != 1 {
		t.Errorf("JWKS read %d times, want 1 (cached)", n)
	}
}

func assertIdentity(t *testing.T, got, want *Identity) {
	t.Helper()
	if got.Provider != want.Provider || got.Subject != want.Subject || got.Login != want.Login || got.Name != want.Name ||
		got.Email != want.Email || got.EmailVerified != want.EmailVerified || got.AvatarURL != want.AvatarURL ||
		!slices.Equal(got.Orgs, want.Orgs) {
		t.Errorf("identity\n got %+v\nwant %+v", *got, *want)
	}
}

func TestDiscoveryExpires(t *testing.T) {
	f := newFakeProvider(t)
	c := New(WithHTTPClient(f.srv.Client()), WithDiscoveryTTL(time.Nanosecond))
	p := f.provider(KindOIDC)
	for range 2 {
		if _, err := signIn(t, c, p); err != nil {
			t.Fatal(err)
		}
	}
	// Begin and Finish each read it when every entry is stale at once.
	if n := f.callCount("/.well-known/openid-configuration"); n < 2 {
		t.Errorf("discovery read %d times with a TTL of 1ns, want it read again", n)
	}
}

func TestOIDCUserInfoFillsClaims(t *testing.T) {
	f := newFakeProvider(t)
	f.claims = func(c map[string]any) {
		delete(c, "email")
		delete(c, "email_verified")
		delete(c, "preferred_username")
		delete(c, "groups")
	}
	c := newClient(f)
	p := f.provider(KindOIDC)
	p.AllowedOrgs = []string{"tools"}
	id, err := signIn(t, c, p)
	if err != nil {
		t.Fatal(err)
	}
	if id.Login != "alice" || id.Email != "alice@example.com" || !id.EmailVerified || !slices.Equal(id.Orgs, []string{"acme", "Tools"}) {
		t.Errorf("identity %+v: want the userinfo endpoint's claims", *id)
	}
	if n := f.callCount("/userinfo"); n != 1 {
		t.Errorf("userinfo called %d times, want 1", n)
	}
}

func TestGiteaSignIn(t *testing.T) {
	f := newFakeProvider(t)
	c := newClient(f)
	p := f.provider(KindGitea)
	p.URL += "/" // a trailing slash is fine
	id, err := signIn(t, c, p)
	if err != nil {
		t.Fatal(err)
	}
	assertIdentity(t, id, &Identity{Provider: p.Name, Subject: "1001", Login: "alice", Name: "Alice Example",
		Email: "alice@example.com", EmailVerified: true, AvatarURL: "https://avatars.example.com/u/1001"})
	if n := f.callCount("/api/v1/user/orgs"); n != 0 {
		t.Errorf("organisations read %d times without allowedOrgs", n)
	}

	p.AllowedOrgs = []string{"tools"}
	id, err = signIn(t, c, p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(id.Orgs, []string{"acme", "Tools"}) {
		t.Errorf("orgs %q", id.Orgs)
	}
	if n := f.callCount("/api/v1/user/orgs"); n != 1 {
		t.Errorf("organisations read %d times, want 1 page (X-Total-Count)", n)
	}
	if n := f.callCount("/.well-known/openid-configuration"); n != 0 {
		t.Errorf("discovery read %d times for Gitea's OAuth sign-in", n)
	}
}

func TestGiteaOpenIDConnect(t *testing.T) {
	f := newFakeProvider(t)
	f.issuerSlash = true // Gitea's issuer is ROOT_URL, ending in "/"
	c := newClient(f)
	p := f.provider(KindGitea)
	p.Scopes = []string{"openid", "profile", "email", "groups"}
	p.AllowedOrgs = []string{"acme"}
	id, err := signIn(t, c, p)
	if err != nil {
		t.Fatal(err)
	}
	assertIdentity(t, id, &Identity{Provider: p.Name, Subject: "1001", Login: "alice", Name: "Alice Example",
		Email: "alice@example.com", EmailVerified: true, AvatarURL: "https://avatars.example.com/u/1001", Orgs: []string{"acme", "Tools"}})
	if n := f.callCount("/api/v1/user"); n != 0 {
		t.Errorf("Gitea's user API read %d times in an OpenID Connect sign-in", n)
	}
}

func TestGitHubSignIn(t *testing.T) {
	f := newFakeProvider(t)
	c := newClient(f)
	p := f.provider(KindGitHub) // GitHub Enterprise Server: API at URL/api/v3
	id, err := signIn(t, c, p)
	if err != nil {
		t.Fatal(err)
	}
	assertIdentity(t, id, &Identity{Provider: p.Name, Subject: "1001", Login: "alice", Name: "Alice Example",
		Email: "alice@example.com", EmailVerified: true, AvatarURL: "https://avatars.example.com/u/1001"})
	if n := f.callCount("/api/v3/user/orgs"); n != 0 {
		t.Errorf("/user/orgs read %d times without allowedOrgs", n)
	}

	p.AllowedOrgs = []string{"acme"}
	p.AllowedDomains = []string{"corp.example"} // a verified address that is not the primary
	id, err = signIn(t, c, p)
	if err != nil {
		t.Fatal(err)
	}
	if id.Email != "alice@corp.example" || !id.EmailVerified || !slices.Equal(id.Orgs, []string{"acme", "Tools"}) {
		t.Errorf("identity %+v: want the verified address in the allowed domain and the orgs", *id)
	}
	if n := f.callCount("/api/v3/user/orgs"); n != 1 {
		t.Errorf("/user/orgs read %d times, want 1", n)
	}
}

func TestGitLabAndBitbucketSignIn(t *testing.T) {
	f := newFakeProvider(t)
	c := newClient(f)
	for _, kind := range []Kind{KindGitLab, KindBitbucket} {
		p := f.provider(kind)
		p.AllowedOrgs = []string{"Acme"}
		p.AllowedDomains = []string{"example.com"}
		id, err := signIn(t, c, p)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		subject := "1001"
		if kind == KindBitbucket {
			subject = "{0f6e7c3c-1234-4d1a-9f00-aaaaaaaaaaaa}"
		}
		assertIdentity(t, id, &Identity{Provider: p.Name, Subject: subject, Login: "alice", Name: "Alice Example",
			Email: "alice@example.com", EmailVerified: true, AvatarURL: "https://avatars.example.com/u/1001", Orgs: []string{"acme", "Tools"}})
	}
}

func TestWrongState(t *testing.T) {
	f := newFakeProvider(t)
	c := newClient(f)
	p := f.provider(KindOIDC)
	pending, state, code := authorize(t, c, p)
	for _, bad := range []string{"", "forged", state + "x", state[:len(state)-1]} {
		_, err := c.Finish(context.Background(), p, pending, bad, code, callback)
		wantErr(t, err, runnel.ErrUnauthenticated, "state does not match")
	}
	if n := f.callCount("/token"); n != 0 {
		t.Errorf("token endpoint called %d times for a callback whose state does not match", n)
	}
	// The code is still good: the forged callbacks spent nothing.
	if _, err := c.Finish(context.Background(), p, pending, state, code, callback); err != nil {
		t.Fatal(err)
	}
}

func TestPendingOfAnotherProvider(t *testing.T) {
	f := newFakeProvider(t)
	c := newClient(f)
	p := f.provider(KindOIDC)
	pending, state, code := authorize(t, c, p)
	other := f.provider(KindGitea)
	_, err := c.Finish(context.Background(), other, pending, state, code, callback)
	wantErr(t, err, runnel.ErrUnauthenticated, `started with provider "fake-oidc"`)
	_, err = c.Finish(context.Background(), p, Pending{}, state, code, callback)
	wantErr(t, err, runnel.ErrUnauthenticated, "no sign-in is pending")
}

// dialects are the ways the token endpoints of the kinds word a refusal.
var dialects = []struct {
	kind    Kind
	dialect string
}{{KindOIDC, ""}, {KindGitea, "gitea"}, {KindGitHub, "github"}, {KindGitLab, ""}, {KindBitbucket, ""}}

func TestWrongVerifier(t *testing.T) {
	for _, d := range dialects {
		f := newFakeProvider(t)
		f.dialect = d.dialect
		c := newClient(f)
		p := f.provider(d.kind)
		pending, state, code := authorize(t, c, p)
		pending.Verifier = "another-verifier-another-verifier-another-verifier"
		_, err := c.Finish(context.Background(), p, pending, state, code, callback)
		wantErr(t, err, runnel.ErrUnauthenticated, "refused the authorization code", "failed PKCE code challenge", "start again")
	}
}

func TestReplayedCode(t *testing.T) {
	for _, d := range dialects {
		f := newFakeProvider(t)
		f.dialect = d.dialect
		c := newClient(f)
		p := f.provider(d.kind)
		pending, state, code := authorize(t, c, p)
		if _, err := c.Finish(context.Background(), p, pending, state, code, callback); err != nil {
			t.Fatal(err)
		}
		_, err := c.Finish(context.Background(), p, pending, state, code, callback)
		wantErr(t, err, runnel.ErrUnauthenticated, "authorization code already used", "used already")
		token := map[Kind]string{KindOIDC: "/token", KindGitLab: "/oauth/token", KindBitbucket: "/site/oauth2/access_token"}[d.kind]
		if token == "" {
			token = "/login/oauth/access_token"
		}
		if n := f.callCount(token); n != 2 {
			t.Errorf("%s: token endpoint called %d times, want 2 (no retry of a refused code)", d.kind, n)
		}
	}
}

func TestBadClientSecret(t *testing.T) {
	for _, d := range dialects {
		f := newFakeProvider(t)
		f.dialect = d.dialect
		c := newClient(f)
		p := f.provider(d.kind)
		p.ClientSecret = "wrong-secret-value"
		_, err := signIn(t, c, p)
		switch d.dialect {
		case "gitea": // unauthorized_client: Gitea's description tells
			wantErr(t, err, runnel.ErrUnauthenticated, "invalid client secret", "clientId and clientSecret are wrong")
		case "github":
			wantErr(t, err, runnel.ErrUpstream, "client credentials", "incorrect_client_credentials")
		default:
			wantErr(t, err, runnel.ErrUpstream, "client credentials", "invalid_client")
		}
		if strings.Contains(err.Error(), p.ClientSecret) {
			t.Errorf("error %q shows the client secret", err)
		}
	}
}

func TestIDTokenChecks(t *testing.T) {
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		claims func(map[string]any)
		key    *rsa.PrivateKey
		want   string
	}{
		{name: "bad nonce", claims: func(c map[string]any) { c["nonce"] = "forged" }, want: "nonce does not match"},
		{name: "no nonce", claims: func(c map[string]any) { delete(c, "nonce") }, want: "nonce does not match"},
		{name: "expired", claims: func(c map[string]any) {
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		}, want: "ID token expired"},
		{name: "another key", key: other, want: "signature"},
		{name: "audience", claims: func(c map[string]any) { c["aud"] = "someone-else" }, want: "audience"},
		{name: "issuer", claims: func(c map[string]any) { c["iss"] = "https://evil.example" }, want: "issued by a different provider"},
		{name: "azp", claims: func(c map[string]any) {
			c["aud"] = []string{"runnel-client", "other"}
			c["azp"] = "other"
		}, want: "another client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeProvider(t)
			f.claims, f.signWith = tc.claims, tc.key
			_, err := signIn(t, newClient(f), f.provider(KindOIDC))
			wantErr(t, err, runnel.ErrUnauthenticated, tc.want)
		})
	}
}

func TestAllowedOrgs(t *testing.T) {
	f := newFakeProvider(t)
	c := newClient(f)
	for _, kind := range []Kind{KindOIDC, KindGitea, KindGitHub, KindGitLab, KindBitbucket} {
		p := f.provider(kind)
		p.AllowedOrgs = []string{"other-org", "acme-2"}
		_, err := signIn(t, c, p)
		wantErr(t, err, runnel.ErrForbidden, "alice is not a member", "(allowedOrgs)")
	}
}

func TestAllowedDomains(t *testing.T) {
	f := newFakeProvider(t)
	c := newClient(f)
	for _, kind := range []Kind{KindOIDC, KindGitea, KindGitHub, KindGitLab, KindBitbucket} {
		p := f.provider(kind)
		// unverified.example holds an address of the user, not verified.
		p.AllowedDomains = []string{"elsewhere.example", "unverified.example"}
		_, err := signIn(t, c, p)
		wantErr(t, err, runnel.ErrForbidden, "no verified email address", "(allowedDomains)")
	}

	// An OpenID Connect address that is not verified is not enough.
	f.set(func(f *fakeProvider) { f.user.emailVerified = false })
	p := f.provider(KindOIDC)
	p.AllowedDomains = []string{"example.com"}
	_, err := signIn(t, c, p)
	wantErr(t, err, runnel.ErrForbidden, "(allowedDomains)")
	p.AllowedDomains = nil
	id, err := signIn(t, c, p)
	if err != nil {
		t.Fatal(err)
	}
	if id.Email != "alice@example.com" || id.EmailVerified {
		t.Errorf("email %q verified %v, want the address, unverified", id.Email, id.EmailVerified)
	}
}

func TestUserAPIErrors(t *testing.T) {
	f := newFakeProvider(t)
	c := newClient(f)
	p := f.provider(KindGitea)

	// The answer quotes the token: the error does not.
	setAPI := func(h http.HandlerFunc) { f.set(func(f *fakeProvider) { f.api = h }) }
	setAPI(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 500, map[string]string{"message": "token " + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + " broke us"})
	})
	_, err := signIn(t, c, p)
	wantErr(t, err, runnel.ErrUpstream, "HTTP 500", "[REDACTED]")

	// A redirect to another host is not followed.
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("redirect followed to %s with Authorization %q", r.URL, r.Header.Get("Authorization"))
	}))
	defer elsewhere.Close()
	setAPI(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/api/v1/user", http.StatusFound)
	})
	_, err = signIn(t, c, p)
	wantErr(t, err, runnel.ErrUpstream, "not followed")

	// A body over 1 MiB is refused.
	setAPI(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id": 1, "login": "` + strings.Repeat("a", 2<<20) + `"}`))
	})
	_, err = signIn(t, c, p)
	wantErr(t, err, runnel.ErrUpstream, "larger than 1 MiB")

	// An answer that names no user.
	setAPI(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{"login": "x"}) })
	_, err = signIn(t, c, p)
	wantErr(t, err, runnel.ErrUpstream, "names no user id")

	// A context that ends is reported as such.
	setAPI(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	pending, state, code := authorize(t, c, p)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Finish(ctx, p, pending, state, code, callback)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want the context's deadline", err)
	}
}

func TestDiscoveryErrors(t *testing.T) {
	f := newFakeProvider(t)
	c := newClient(f)
	p := f.provider(KindOIDC)
	p.URL = f.srv.URL + "/tenant" // discovery answers for another issuer (or not at all)
	_, _, err := c.Begin(context.Background(), p, callback)
	wantErr(t, err, runnel.ErrUpstream, "HTTP 404")

	mismatch := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"issuer": "https://other.example", "authorization_endpoint": "https://other.example/a",
			"token_endpoint": "https://other.example/t", "jwks_uri": "https://other.example/k"})
	}))
	defer mismatch.Close()
	p.URL = mismatch.URL
	_, _, err = c.Begin(context.Background(), p, callback)
	wantErr(t, err, runnel.ErrUpstream, "names the issuer", "set url to the issuer")

	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := "http://" + r.Host
		writeJSON(w, 200, map[string]any{"issuer": u, "authorization_endpoint": u + "/a", "token_endpoint": u + "/t",
			"jwks_uri": u + "/k", "id_token_signing_alg_values_supported": []string{"HS256", "none"}})
	}))
	defer hs.Close()
	p.URL = hs.URL
	_, _, err = c.Begin(context.Background(), p, callback)
	wantErr(t, err, runnel.ErrUpstream, "signed with HS256, none only")
}

func TestBeginChecks(t *testing.T) {
	c := New()
	_, _, err := c.Begin(context.Background(), Provider{Name: "x", Kind: "saml"}, callback)
	wantErr(t, err, runnel.ErrUnavailable, `provider "x" is misconfigured`, "provider.kind")
	p := Provider{Name: "gh", Kind: KindGitHub, ClientID: "id", ClientSecret: "secret"}
	for _, bad := range []string{"", "/relative", "ftp://x/cb", "https://runnel.example/cb#frag", "https://u:p@runnel.example/cb"} {
		_, _, err = c.Begin(context.Background(), p, bad)
		wantErr(t, err, runnel.ErrInvalid, "redirectURL")
	}
	authURL, _, err := c.Begin(context.Background(), p, callback)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	if u.Scheme+"://"+u.Host+u.Path != "https://github.com/login/oauth/authorize" || u.Query().Get("scope") != "read:user user:email" ||
		u.Query().Get("nonce") != "" {
		t.Errorf("GitHub authorization URL %s", authURL)
	}
}

func TestCallbackError(t *testing.T) {
	if err := CallbackError("gh", url.Values{"code": {"x"}, "state": {"y"}}); err != nil {
		t.Errorf("CallbackError of a code: %v", err)
	}
	err := CallbackError("gh", url.Values{"error": {"access_denied"}, "error_description": {"The user\ndenied"}})
	wantErr(t, err, runnel.ErrForbidden, `provider "gh": the sign-in was declined (access_denied: The user denied)`)
	err = CallbackError("gh", url.Values{"error": {"server_error"}})
	wantErr(t, err, runnel.ErrUpstream, "(server_error)")
}

// Sign-ins run at once through one Client: the race detector watches.
func TestConcurrentSignIns(t *testing.T) {
	f := newFakeProvider(t)
	c := newClient(f)
	var wg sync.WaitGroup
	for i := range 16 {
		kind := []Kind{KindOIDC, KindGitea, KindGitHub, KindGitLab}[i%4]
		wg.Go(func() {
			p := f.provider(kind)
			p.AllowedOrgs = []string{"acme"}
			pending, state, code, err := tryAuthorize(c, p)
			if err == nil {
				_, err = c.Finish(context.Background(), p, pending, state, code, callback)
			}
			if err != nil {
				t.Errorf("%s: %v", kind, err)
			}
		})
	}
	wg.Wait()
}

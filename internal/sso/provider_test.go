package sso

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// fakeProvider is an identity provider over real HTTP: an OpenID Connect
// issuer (discovery, JWKS, authorization and token endpoints, userinfo) and
// the user APIs of GitHub (Enterprise, /api/v3), GitLab (/api/v4), Gitea
// (/api/v1) and Bitbucket (/api/2.0), all at one URL. Its authorization
// endpoint redirects back at once, as if the user had consented; its token
// endpoint checks the client's credentials, the redirect URI and the PKCE
// verifier, and refuses a code used before.
type fakeProvider struct {
	t            *testing.T
	srv          *httptest.Server
	key          *rsa.PrivateKey
	clientID     string
	clientSecret string
	// issuerSlash makes the issuer end in "/", as Gitea's does.
	issuerSlash bool
	// dialect is how the token endpoint words a refusal: "" as RFC 6749
	// says; "gitea" as Gitea 1.26 does (unauthorized_client for a bad
	// code, verifier or secret); "github" as GitHub does (HTTP 200 with
	// bad_verification_code, incorrect_client_credentials).
	dialect string

	mu     sync.Mutex
	grants map[string]*grant
	tokens map[string]bool
	calls  map[string]int
	// signWith, when set, signs ID tokens instead of key (still as kid k1).
	signWith *rsa.PrivateKey
	// claims changes an ID token's claims before it is signed.
	claims func(map[string]any)
	// user is who signs in.
	user fakeUser
	// api, when set, answers the user API instead of the fake's handlers.
	api http.HandlerFunc
}

type fakeUser struct {
	id            int64
	login, name   string
	email         string
	emailVerified bool
	emails        []forgeEmail
	orgs          []string
	avatar        string
}

type grant struct {
	clientID, redirectURI, challenge, nonce, scope string
	used                                           bool
}

func newFakeProvider(t *testing.T) *fakeProvider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeProvider{
		t: t, key: key, clientID: "runnel-client", clientSecret: "s3cret-Value_1",
		grants: map[string]*grant{}, tokens: map[string]bool{}, calls: map[string]int{},
		user: fakeUser{
			id: 1001, login: "alice", name: "Alice Example", email: "alice@example.com", emailVerified: true,
			emails: []forgeEmail{
				{Email: "alice@example.com", Primary: true, Verified: true},
				{Email: "alice@corp.example", Verified: true},
				{Email: "alice@unverified.example", Verified: false},
			},
			orgs:   []string{"acme", "Tools"},
			avatar: "https://avatars.example.com/u/1001",
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", f.discovery)
	mux.HandleFunc("GET /jwks", f.jwks)
	for _, p := range []string{"/authorize", "/login/oauth/authorize", "/oauth/authorize", "/site/oauth2/authorize"} {
		mux.HandleFunc("GET "+p, f.authorize)
	}
	for _, p := range []string{"/token", "/login/oauth/access_token", "/oauth/token", "/site/oauth2/access_token"} {
		mux.HandleFunc("POST "+p, f.token)
	}
	mux.HandleFunc("GET /userinfo", f.authed(f.userinfo))
	for _, base := range []string{"/api/v1", "/api/v3", "/api/v4", "/api/2.0"} {
		mux.HandleFunc("GET "+base+"/", f.authed(f.userAPI))
	}
	f.srv = httptest.NewServer(f.count(mux))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeProvider) issuer() string {
	if f.issuerSlash {
		return f.srv.URL + "/"
	}
	return f.srv.URL
}

func (f *fakeProvider) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls[r.URL.Path]++
		f.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (f *fakeProvider) callCount(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[path]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeProvider) discovery(w http.ResponseWriter, _ *http.Request) {
	u := f.srv.URL
	writeJSON(w, 200, map[string]any{
		"issuer":                                f.issuer(),
		"authorization_endpoint":                u + "/authorize",
		"token_endpoint":                        u + "/token",
		"jwks_uri":                              u + "/jwks",
		"userinfo_endpoint":                     u + "/userinfo",
		"response_types_supported":              []string{"code"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (f *fakeProvider) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &f.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"},
	}})
}

// authorize checks the authorization request and redirects back with a code.
func (f *fakeProvider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", 400)
		return
	case q.Get("client_id") != f.clientID:
		http.Error(w, "unknown client_id", 400)
		return
	case q.Get("code_challenge_method") != "S256":
		http.Error(w, "code_challenge_method must be S256", 400)
		return
	case len(q.Get("code_challenge")) != 43:
		http.Error(w, "code_challenge must be a base64url SHA-256", 400)
		return
	case q.Get("state") == "" || q.Get("redirect_uri") == "":
		http.Error(w, "state and redirect_uri are required", 400)
		return
	}
	code := strings.ToLower(rand.Text())
	f.mu.Lock()
	f.grants[code] = &grant{clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"),
		challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), scope: q.Get("scope")}
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

// token exchanges a code: client credentials (basic or form), redirect
// URI, PKCE S256, one use.
func (f *fakeProvider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	f.mu.Lock()
	dialect := f.dialect
	f.mu.Unlock()
	refuse := func(status int, code, desc string) {
		switch dialect {
		case "gitea":
			status, code = 400, "unauthorized_client"
		case "github":
			status = 200
			if code == "invalid_grant" {
				code, desc = "bad_verification_code", "The code passed is incorrect or expired. ("+desc+")"
			} else {
				code = "incorrect_client_credentials"
			}
		}
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	if id != f.clientID || secret != f.clientSecret {
		refuse(401, "invalid_client", "invalid client secret")
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	f.mu.Lock()
	g := f.grants[r.PostForm.Get("code")]
	var refusal string
	switch {
	case g == nil:
		refusal = "unknown authorization code"
	case g.used:
		refusal = "authorization code already used"
	case g.redirectURI != r.PostForm.Get("redirect_uri"):
		refusal = "redirect_uri does not match"
	case s256(r.PostForm.Get("code_verifier")) != g.challenge:
		refusal = "failed PKCE code challenge"
	}
	if g != nil {
		g.used = true
	}
	access := strings.ToLower(rand.Text())
	if refusal == "" {
		f.tokens[access] = true
	}
	f.mu.Unlock()
	if refusal != "" {
		refuse(400, "invalid_grant", refusal)
		return
	}
	resp := map[string]any{"access_token": access, "token_type": "bearer", "expires_in": 3600}
	if slices.Contains(strings.Fields(g.scope), "openid") {
		resp["id_token"] = f.idToken(g)
	}
	writeJSON(w, 200, resp)
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// set changes the fake under its lock.
func (f *fakeProvider) set(change func(f *fakeProvider)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeProvider) currentUser() fakeUser {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.user
}

func (f *fakeProvider) idToken(g *grant) string {
	now := time.Now()
	u := f.currentUser()
	c := map[string]any{
		"iss": f.issuer(), "sub": strconv.FormatInt(u.id, 10), "aud": f.clientID,
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "nonce": g.nonce,
		"preferred_username": u.login, "name": u.name, "email": u.email, "email_verified": u.emailVerified,
		"picture": u.avatar, "groups": u.orgs,
	}
	f.mu.Lock()
	mutate, key := f.claims, f.signWith
	f.mu.Unlock()
	if mutate != nil {
		mutate(c)
	}
	if key == nil {
		key = f.key
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		f.t.Error(err)
		return ""
	}
	payload, _ := json.Marshal(c)
	obj, err := signer.Sign(payload)
	if err != nil {
		f.t.Error(err)
		return ""
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		f.t.Error(err)
	}
	return s
}

// authed refuses requests without an access token the fake issued.
func (f *fakeProvider) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		valid := ok && f.tokens[tok]
		f.mu.Unlock()
		if !valid {
			writeJSON(w, 401, map[string]string{"message": "token is required"})
			return
		}
		h(w, r)
	}
}

func (f *fakeProvider) userinfo(w http.ResponseWriter, _ *http.Request) {
	u := f.currentUser()
	writeJSON(w, 200, map[string]any{
		"sub": strconv.FormatInt(u.id, 10), "preferred_username": u.login, "name": u.name,
		"email": u.email, "email_verified": u.emailVerified, "picture": u.avatar, "groups": u.orgs,
	})
}

// userAPI answers the forges' user APIs.
func (f *fakeProvider) userAPI(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	override := f.api
	f.mu.Unlock()
	if override != nil {
		override(w, r)
		return
	}
	u := f.currentUser()
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	orgs := u.orgs
	if page > 1 {
		orgs = nil
	}
	switch r.URL.Path {
	case "/api/v3/user": // GitHub
		writeJSON(w, 200, map[string]any{"id": u.id, "login": u.login, "name": u.name, "email": nil, "avatar_url": u.avatar})
	case "/api/v1/user": // Gitea
		writeJSON(w, 200, map[string]any{"id": u.id, "login": u.login, "full_name": u.name, "email": u.email, "avatar_url": u.avatar})
	case "/api/v3/user/emails", "/api/v1/user/emails":
		writeJSON(w, 200, u.emails)
	case "/api/v3/user/orgs":
		list := []map[string]any{}
		for _, o := range orgs {
			list = append(list, map[string]any{"login": o, "id": 1})
		}
		writeJSON(w, 200, list)
	case "/api/v1/user/orgs":
		list := []map[string]any{}
		for _, o := range orgs {
			list = append(list, map[string]any{"id": 1, "name": o, "username": o, "full_name": o + " Inc."})
		}
		w.Header().Set("X-Total-Count", strconv.Itoa(len(u.orgs)))
		writeJSON(w, 200, list)
	case "/api/v4/user": // GitLab
		writeJSON(w, 200, map[string]any{"id": u.id, "username": u.login, "name": u.name, "email": u.email,
			"avatar_url": u.avatar, "confirmed_at": "2024-01-02T03:04:05Z", "state": "active"})
	case "/api/v4/groups":
		if r.URL.Query().Get("min_access_level") != "10" {
			http.Error(w, "min_access_level expected", 400)
			return
		}
		list := []map[string]any{}
		for _, o := range orgs {
			list = append(list, map[string]any{"id": 1, "path": o, "full_path": o})
		}
		writeJSON(w, 200, list)
	case "/api/2.0/user": // Bitbucket
		writeJSON(w, 200, map[string]any{"uuid": "{0f6e7c3c-1234-4d1a-9f00-aaaaaaaaaaaa}", "nickname": u.login,
			"display_name": u.name, "links": map[string]any{"avatar": map[string]any{"href": u.avatar}}})
	case "/api/2.0/user/emails":
		var values []map[string]any
		for _, e := range u.emails {
			values = append(values, map[string]any{"email": e.Email, "is_primary": e.Primary, "is_confirmed": e.Verified})
		}
		writeJSON(w, 200, map[string]any{"values": values, "pagelen": 100, "page": 1})
	case "/api/2.0/workspaces":
		var values []map[string]any
		for _, o := range orgs {
			values = append(values, map[string]any{"slug": o, "name": o})
		}
		writeJSON(w, 200, map[string]any{"values": values, "page": page})
	default:
		writeJSON(w, 404, map[string]string{"message": "not found"})
	}
}

// provider is a Provider of kind against the fake.
func (f *fakeProvider) provider(kind Kind) Provider {
	return Provider{Name: "fake-" + string(kind), Kind: kind, ClientID: f.clientID, ClientSecret: f.clientSecret, URL: f.srv.URL}
}

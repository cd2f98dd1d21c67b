package signin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/sso"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/store/sqlstore"
)

const connectCallback = "https://runnel.example/api/v1/sso/forge/callback"

// connectForge is a Gitea or GitLab OAuth application over real HTTP: an
// authorization endpoint that redirects back at once (the user consented),
// a token endpoint for codes (PKCE S256 checked) and refresh tokens
// (rotated), and the user API (/api/v1 and /api/v4) answering for whichever
// user logs in.
type connectForge struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	challenge map[string]string // code → code_challenge
	access    map[string]bool
	refresh   map[string]bool
	// refreshes counts refresh_token requests.
	refreshes int
	// expiresIn is the lifetime of the tokens the endpoint gives.
	expiresIn int
	// refuse, when set, refuses refreshes with HTTP 400 and this error.
	refuse string
	// delay slows refreshes (so that concurrent callers overlap).
	delay time.Duration
	// userID and login are who logs in at the forge.
	userID int64
	login  string
	// issued is the latest access and refresh token issued.
	lastAccess, lastRefresh string
}

func newConnectForge(t *testing.T) *connectForge {
	t.Helper()
	f := &connectForge{t: t, challenge: map[string]string{}, access: map[string]bool{}, refresh: map[string]bool{},
		expiresIn: 3600, userID: 77, login: "robin"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", f.authorize) // Gitea
	mux.HandleFunc("GET /oauth/authorize", f.authorize)       // GitLab
	mux.HandleFunc("POST /login/oauth/access_token", f.token)
	mux.HandleFunc("POST /oauth/token", f.token)
	mux.HandleFunc("GET /api/v1/", f.user)
	mux.HandleFunc("GET /api/v4/", f.user)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *connectForge) set(change func(f *connectForge)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *connectForge) refreshCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes
}

func (f *connectForge) tokens() (access, refresh string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastAccess, f.lastRefresh
}

func jsonAnswer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *connectForge) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("state") == "" || q.Get("client_id") != "forge-client" {
		http.Error(w, "bad authorization request", 400)
		return
	}
	code := strings.ToLower(rand.Text())
	f.mu.Lock()
	f.challenge[code] = q.Get("code_challenge")
	f.mu.Unlock()
	back, _ := url.Parse(q.Get("redirect_uri"))
	bq := back.Query()
	bq.Set("code", code)
	bq.Set("state", q.Get("state"))
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (f *connectForge) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("client_secret") != "forge-secret" {
		jsonAnswer(w, 401, map[string]string{"error": "invalid_client"})
		return
	}
	f.mu.Lock()
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		want, ok := f.challenge[r.PostForm.Get("code")]
		delete(f.challenge, r.PostForm.Get("code"))
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != want {
			f.mu.Unlock()
			jsonAnswer(w, 400, map[string]string{"error": "invalid_grant", "error_description": "bad code or verifier"})
			return
		}
	case "refresh_token":
		f.refreshes++
		refuse, delay := f.refuse, f.delay
		rt := r.PostForm.Get("refresh_token")
		known := f.refresh[rt]
		delete(f.refresh, rt)
		f.mu.Unlock()
		time.Sleep(delay)
		if refuse != "" || !known {
			jsonAnswer(w, 400, map[string]string{"error": cmpOr(refuse, "invalid_grant"), "error_description": "the refresh token is revoked"})
			return
		}
		f.mu.Lock()
	default:
		f.mu.Unlock()
		jsonAnswer(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	access, rt := "tok-"+strings.ToLower(rand.Text()), "ref-"+strings.ToLower(rand.Text())
	f.access[access], f.refresh[rt] = true, true
	f.lastAccess, f.lastRefresh = access, rt
	resp := map[string]any{"access_token": access, "refresh_token": rt, "token_type": "bearer", "expires_in": f.expiresIn}
	f.mu.Unlock()
	jsonAnswer(w, 200, resp)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (f *connectForge) user(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	ok, id, login := f.access[tok], f.userID, f.login
	f.mu.Unlock()
	if !ok {
		jsonAnswer(w, 401, map[string]string{"message": "bad token"})
		return
	}
	switch r.URL.Path {
	case "/api/v1/user":
		jsonAnswer(w, 200, map[string]any{"id": id, "login": login, "full_name": "Robin", "email": login + "@example.com",
			"avatar_url": "https://avatars.example.com/" + login})
	case "/api/v1/user/emails":
		jsonAnswer(w, 200, []map[string]any{{"email": login + "@example.com", "primary": true, "verified": true}})
	case "/api/v4/user":
		jsonAnswer(w, 200, map[string]any{"id": id, "username": login, "name": "Robin", "email": login + "@example.com",
			"confirmed_at": "2024-01-01T00:00:00Z"})
	default:
		jsonAnswer(w, 404, map[string]string{"message": "not found"})
	}
}

// connectEnv is a sign-in service over a real SQLite store and keyring,
// with a forge provider that connects accounts.
type connectEnv struct {
	t     *testing.T
	st    *sqlstore.Store
	keys  *secret.Keyring
	s     *Service
	forge *connectForge
	alice *store.User
}

func newConnectEnv(t *testing.T, kind string) *connectEnv {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := secret.NewKeyring(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	f := newConnectForge(t)
	s := New(Options{Store: st, Keys: keys, SSO: sso.New(sso.WithHTTPClient(f.srv.Client()))})
	str := func(v string) *string { return &v }
	yes, no := true, false
	if _, err := s.CreateProvider(ctx, ProviderInput{Name: "forge", Kind: str(kind), URL: str(f.srv.URL), ClientID: str("forge-client"),
		ClientSecret: str("forge-secret"), SignIn: &no, Connect: &yes}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateProvider(ctx, ProviderInput{Name: "signin-only", Kind: str(kind), URL: str(f.srv.URL), ClientID: str("forge-client"),
		ClientSecret: str("forge-secret"), SignIn: &yes, Connect: &no}); err != nil {
		t.Fatal(err)
	}
	e := &connectEnv{t: t, st: st, keys: keys, s: s, forge: f}
	e.alice = e.user("alice")
	return e
}

func (e *connectEnv) user(login string) *store.User {
	e.t.Helper()
	u := &store.User{ID: runnel.NewID("usr"), Login: login, CreatedAt: time.Now().UTC()}
	if err := e.st.CreateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	return u
}

func as(u *store.User) context.Context {
	return runnel.WithPrincipal(context.Background(), runnel.Principal{Subject: u.Login, Role: "user", UserID: u.ID})
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// connect runs a whole connection for u: BeginConnect, the forge's
// authorization endpoint, the callback's Finish.
func (e *connectEnv) connect(u *store.User, returnTo string) (*Finished, error) {
	e.t.Helper()
	authURL, err := e.s.BeginConnect(as(u), "forge", connectCallback, returnTo)
	if err != nil {
		e.t.Fatalf("BeginConnect: %v", err)
	}
	resp, err := noRedirects.Get(authURL)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		e.t.Fatalf("authorization endpoint: HTTP %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The callback comes without the user's session: the login state says
	// whose account it is.
	return e.s.Finish(context.Background(), "forge", back.Query(), connectCallback, Meta{UserAgent: "test"})
}

func (e *connectEnv) credentials() []*store.Credential {
	e.t.Helper()
	list, err := e.st.ListCredentials(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

func (e *connectEnv) open(id string, ciphertext []byte, keyID string) string {
	e.t.Helper()
	v, err := e.keys.Open(id, ciphertext, keyID)
	if err != nil {
		e.t.Fatalf("open %s: %v", id, err)
	}
	return string(v)
}

// TestBeginConnectNeedsUserAndProvider: connecting needs a signed-in user
// (a token of no user cannot own an account) and a provider that connects
// accounts.
func TestBeginConnectNeedsUserAndProvider(t *testing.T) {
	e := newConnectEnv(t, "gitea")
	for name, ctx := range map[string]context.Context{
		"no caller":          context.Background(),
		"a token of no user": runnel.WithPrincipal(context.Background(), runnel.Principal{Subject: "ci-bot", Role: "admin"}),
	} {
		if _, err := e.s.BeginConnect(ctx, "forge", connectCallback, "/"); !errors.Is(err, runnel.ErrForbidden) ||
			!strings.Contains(err.Error(), "needs a signed-in user") {
			t.Errorf("%s: %v, want ErrForbidden", name, err)
		}
	}
	if _, err := e.s.BeginConnect(as(e.alice), "signin-only", connectCallback, "/"); !errors.Is(err, runnel.ErrNotFound) ||
		!strings.Contains(err.Error(), "does not connect forge accounts") {
		t.Errorf("a provider with connect off: %v, want ErrNotFound", err)
	}
	if _, err := e.s.BeginConnect(as(e.alice), "nope", connectCallback, "/"); !errors.Is(err, runnel.ErrNotFound) {
		t.Errorf("an unknown provider: %v, want ErrNotFound", err)
	}
	// A provider that connects only does not sign anyone in.
	if _, err := e.s.Begin(context.Background(), "forge", connectCallback, "/"); !errors.Is(err, runnel.ErrNotFound) {
		t.Errorf("sign-in with a connect-only provider: %v, want ErrNotFound", err)
	}

	authURL, err := e.s.BeginConnect(as(e.alice), "forge", connectCallback, "/settings/accounts")
	if err != nil {
		t.Fatal(err)
	}
	q := mustQuery(t, authURL)
	if q.Get("scope") != "write:repository write:user read:organization" || q.Get("code_challenge_method") != "S256" || q.Get("state") == "" {
		t.Errorf("authorization URL %s: want Gitea's connect scopes, PKCE S256 and a state", authURL)
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// TestConnectCreatesCredential: a connection ends in a personal credential
// of the user (no session, no cookie); connecting the same account again
// renews that credential; another user's connection of the same account is
// another credential.
func TestConnectCreatesCredential(t *testing.T) {
	for _, tc := range []struct{ kind, username string }{{"gitea", "robin"}, {"gitlab", "oauth2"}} {
		t.Run(tc.kind, func(t *testing.T) {
			e := newConnectEnv(t, tc.kind)
			ctx := context.Background()
			host := strings.TrimPrefix(e.forge.srv.URL, "http://")
			before := time.Now()
			fin, err := e.connect(e.alice, "/settings/accounts")
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			if fin.Connected == nil || fin.Cookie != "" || fin.Session != nil || fin.User != nil || fin.Created || fin.ReturnTo != "/settings/accounts" {
				t.Fatalf("finished %+v: want Connected and no session", *fin)
			}
			if sessions, err := e.st.ListSessions(ctx, e.alice.ID); err != nil || len(sessions) != 0 {
				t.Errorf("sessions of the user after a connection: %d, %v", len(sessions), err)
			}
			if _, err := e.st.UserOfIdentity(ctx, "forge", "77"); !errors.Is(err, runnel.ErrNotFound) {
				t.Errorf("a connection linked the forge account as a sign-in identity: %v", err)
			}
			list := e.credentials()
			if len(list) != 1 {
				t.Fatalf("%d credentials, want 1", len(list))
			}
			c := list[0]
			if c.ID != fin.Connected.ID || c.Name != "forge-robin" || c.Kind != tc.kind || c.Host != host || c.Username != tc.username ||
				c.OwnerID != e.alice.ID || c.CreatorID != e.alice.ID || c.CreatedBy != "alice" || c.Provider != "forge" ||
				c.AccountID != "77" || c.LoginName != "robin" || c.ProjectID != "" {
				t.Errorf("credential %+v", *c)
			}
			access, refresh := e.forge.tokens()
			if got := e.open(c.ID, c.Ciphertext, c.KeyID); got != access {
				t.Errorf("the sealed access token opens to %q, want %q", got, access)
			}
			if got := e.open(c.RefreshSealID(), c.RefreshCiphertext, c.RefreshKeyID); got != refresh {
				t.Errorf("the sealed refresh token opens to %q, want %q", got, refresh)
			}
			if _, err := e.keys.Open(c.ID, c.RefreshCiphertext, c.RefreshKeyID); err == nil {
				t.Error("the refresh token opens as the access token: it is not sealed under its own id")
			}
			if bytes.Contains(c.Ciphertext, []byte(access)) || bytes.Contains(c.RefreshCiphertext, []byte(refresh)) {
				t.Error("a token is stored in the clear")
			}
			if c.ExpiresAt == nil || c.ExpiresAt.Before(before.Add(59*time.Minute)) || c.ExpiresAt.After(time.Now().Add(61*time.Minute)) {
				t.Errorf("expires at %v, want about an hour from now", c.ExpiresAt)
			}

			// The user renamed it; connecting the same account again renews
			// it, name kept, no second credential.
			e.forge.set(func(f *connectForge) { f.expiresIn = 7200 })
			cur, _ := e.st.GetCredential(ctx, c.ID)
			cur.Name = "my-forge"
			if err := e.st.UpdateCredential(ctx, cur); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond) // a later moment than the creation
			fin, err = e.connect(e.alice, "/")
			if err != nil {
				t.Fatalf("connecting again: %v", err)
			}
			list = e.credentials()
			if len(list) != 1 || list[0].ID != c.ID || fin.Connected.ID != c.ID {
				t.Fatalf("after connecting again: %d credentials (%v), want the same one", len(list), list)
			}
			renewed := list[0]
			access2, refresh2 := e.forge.tokens()
			if renewed.Name != "my-forge" || !renewed.CreatedAt.Equal(c.CreatedAt) || !renewed.UpdatedAt.After(c.UpdatedAt) {
				t.Errorf("renewed credential: name %q created %v updated %v (was %v)", renewed.Name, renewed.CreatedAt, renewed.UpdatedAt, c.UpdatedAt)
			}
			if got := e.open(renewed.ID, renewed.Ciphertext, renewed.KeyID); got != access2 || access2 == access {
				t.Errorf("the renewed access token opens to %q, want the new %q", got, access2)
			}
			if got := e.open(renewed.RefreshSealID(), renewed.RefreshCiphertext, renewed.RefreshKeyID); got != refresh2 {
				t.Errorf("the renewed refresh token opens to %q, want %q", got, refresh2)
			}
			if renewed.ExpiresAt == nil || !renewed.ExpiresAt.After(c.ExpiresAt.Add(50*time.Minute)) {
				t.Errorf("renewed expiry %v, want about two hours from now (was %v)", renewed.ExpiresAt, c.ExpiresAt)
			}

			// Another user connecting the same forge account gets their own.
			bob := e.user("bob")
			fin, err = e.connect(bob, "/")
			if err != nil {
				t.Fatal(err)
			}
			if fin.Connected.ID == c.ID || fin.Connected.OwnerID != bob.ID || fin.Connected.Name != "forge-robin" {
				t.Errorf("bob's connection: %+v", *fin.Connected)
			}
			// A third user's clashes with forge-robin: suffixed.
			carol := e.user("carol")
			fin, err = e.connect(carol, "/")
			if err != nil {
				t.Fatal(err)
			}
			if fin.Connected.Name != "forge-robin-2" || fin.Connected.OwnerID != carol.ID {
				t.Errorf("carol's connection: name %q owner %q, want forge-robin-2", fin.Connected.Name, fin.Connected.OwnerID)
			}
			if n := len(e.credentials()); n != 3 {
				t.Errorf("%d credentials, want 3", n)
			}
		})
	}
}

// TestConnectCallbackChecks: the login state of a connection is used once;
// a user removed or disabled in between is refused.
func TestConnectCallbackChecks(t *testing.T) {
	e := newConnectEnv(t, "gitea")
	ctx := context.Background()
	begin := func(u *store.User) url.Values {
		t.Helper()
		authURL, err := e.s.BeginConnect(as(u), "forge", connectCallback, "/")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := noRedirects.Get(authURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		back, _ := url.Parse(resp.Header.Get("Location"))
		return back.Query()
	}
	q := begin(e.alice)
	if _, err := e.s.Finish(ctx, "forge", q, connectCallback, Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Finish(ctx, "forge", q, connectCallback, Meta{}); !errors.Is(err, runnel.ErrUnauthenticated) {
		t.Errorf("the same callback twice: %v, want ErrUnauthenticated", err)
	}

	q = begin(e.alice)
	e.alice.Disabled = true
	if err := e.st.UpdateUser(ctx, e.alice); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Finish(ctx, "forge", q, connectCallback, Meta{}); !errors.Is(err, runnel.ErrForbidden) {
		t.Errorf("a disabled user's connection: %v, want ErrForbidden", err)
	}
	if n := len(e.credentials()); n != 1 {
		t.Errorf("%d credentials, want the first connection's only", n)
	}
}

// connectExpiring connects alice's account with an access token that
// expires within RefreshMargin.
func (e *connectEnv) connectExpiring() *store.Credential {
	e.t.Helper()
	e.forge.set(func(f *connectForge) { f.expiresIn = int((RefreshMargin - time.Minute).Seconds()) })
	fin, err := e.connect(e.alice, "/")
	if err != nil {
		e.t.Fatal(err)
	}
	e.forge.set(func(f *connectForge) { f.expiresIn = 3600 })
	c, err := e.st.GetCredential(context.Background(), fin.Connected.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// TestAccessTokenRefreshes: a token expiring within RefreshMargin is
// refreshed once, however many callers need it at once, and the renewed
// tokens are stored; a fresh token is opened as stored.
func TestAccessTokenRefreshes(t *testing.T) {
	e := newConnectEnv(t, "gitea")
	ctx := context.Background()
	stale := e.connectExpiring()
	oldAccess := e.open(stale.ID, stale.Ciphertext, stale.KeyID)
	e.forge.set(func(f *connectForge) { f.delay = 50 * time.Millisecond })

	const callers = 5
	got := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { got[i], errs[i] = e.s.AccessToken(ctx, stale) })
	}
	wg.Wait()
	if n := e.forge.refreshCount(); n != 1 {
		t.Errorf("the token endpoint refreshed %d times for %d concurrent callers, want 1", n, callers)
	}
	newAccess, newRefresh := e.forge.tokens()
	for i := range callers {
		if errs[i] != nil || got[i] != newAccess {
			t.Errorf("caller %d: %q, %v; want the refreshed token %q", i, got[i], errs[i], newAccess)
		}
	}
	if newAccess == oldAccess {
		t.Fatal("the forge issued the same token")
	}
	cur, err := e.st.GetCredential(ctx, stale.ID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(cur.Ciphertext, stale.Ciphertext) || bytes.Equal(cur.RefreshCiphertext, stale.RefreshCiphertext) {
		t.Error("the stored ciphertexts did not change")
	}
	if v := e.open(cur.ID, cur.Ciphertext, cur.KeyID); v != newAccess {
		t.Errorf("the stored access token opens to %q, want %q", v, newAccess)
	}
	if v := e.open(cur.RefreshSealID(), cur.RefreshCiphertext, cur.RefreshKeyID); v != newRefresh {
		t.Errorf("the stored refresh token opens to %q, want the rotated %q", v, newRefresh)
	}
	if cur.ExpiresAt == nil || time.Until(*cur.ExpiresAt) < 50*time.Minute {
		t.Errorf("stored expiry %v, want about an hour from now", cur.ExpiresAt)
	}
	if cur.Name != stale.Name || cur.OwnerID != stale.OwnerID || cur.AccountID != stale.AccountID {
		t.Errorf("the refresh changed the credential: %+v", *cur)
	}

	// The caller still holding the stale credential is not refreshed again:
	// the stored one is read first.
	if v, err := e.s.AccessToken(ctx, stale); err != nil || v != newAccess {
		t.Errorf("AccessToken with the stale copy: %q, %v", v, err)
	}
	// A fresh token is not refreshed.
	for range 3 {
		if v, err := e.s.AccessToken(ctx, cur); err != nil || v != newAccess {
			t.Errorf("AccessToken of a fresh token: %q, %v", v, err)
		}
	}
	if n := e.forge.refreshCount(); n != 1 {
		t.Errorf("refreshed %d times in all, want 1", n)
	}
}

// TestAccessTokenRefreshRefused: a refresh the forge refuses says which
// credential and that the account must be connected again; the stored
// credential is unchanged. A provider removed since is said so.
func TestAccessTokenRefreshRefused(t *testing.T) {
	e := newConnectEnv(t, "gitlab")
	ctx := context.Background()
	stale := e.connectExpiring()
	e.forge.set(func(f *connectForge) { f.refuse = "invalid_grant" })
	_, err := e.s.AccessToken(ctx, stale)
	if !errors.Is(err, runnel.ErrUnauthenticated) {
		t.Errorf("a refused refresh: %v, want ErrUnauthenticated", err)
	}
	for _, want := range []string{"credential " + stale.Name, `provider "forge" refused to refresh`, "connect the account again"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	cur, _ := e.st.GetCredential(ctx, stale.ID)
	if !bytes.Equal(cur.Ciphertext, stale.Ciphertext) || !bytes.Equal(cur.RefreshCiphertext, stale.RefreshCiphertext) {
		t.Error("a refused refresh changed the stored tokens")
	}

	// A credential made by hand (no refresh token) is opened as stored
	// even when its expiry passed.
	hand := &store.Credential{ID: runnel.NewID("cred"), Name: "by-hand", Kind: "gitlab", Host: "gitlab.com", CreatedAt: time.Now().UTC()}
	past := time.Now().Add(-time.Hour).UTC()
	hand.ExpiresAt = &past
	hand.Ciphertext, hand.KeyID = e.keys.Seal(hand.ID, []byte("glpat-by-hand-0000"))
	if err := e.st.CreateCredential(ctx, hand); err != nil {
		t.Fatal(err)
	}
	if v, err := e.s.AccessToken(ctx, hand); err != nil || v != "glpat-by-hand-0000" {
		t.Errorf("a hand-made credential: %q, %v", v, err)
	}

	if err := e.st.DeleteAuthProvider(ctx, "forge"); err != nil {
		t.Fatal(err)
	}
	if cur, err = e.st.GetCredential(ctx, stale.ID); err != nil {
		t.Skipf("the credential went with its provider: %v", err)
	}
	_, err = e.s.AccessToken(ctx, cur)
	if !errors.Is(err, runnel.ErrUnavailable) || !strings.Contains(err.Error(), "connect the account again") {
		t.Errorf("a refresh through a deleted provider: %v, want ErrUnavailable saying to connect again", err)
	}
}

// TestConnectedTokenThroughResolver: a job's claim opens a connected
// account's credential through the sign-in service (refreshed), a
// hand-made one through the keyring.
func TestConnectedTokenThroughResolver(t *testing.T) {
	e := newConnectEnv(t, "gitea")
	ctx := context.Background()
	stale := e.connectExpiring()
	now := time.Now().UTC()
	p := &store.Pipeline{ID: runnel.NewID("pl"), ProjectID: "p", Name: "app", SaveMode: "direct", CreatedAt: now, UpdatedAt: now}
	if err := e.st.CreatePipeline(ctx, p); err != nil {
		t.Fatal(err)
	}
	r := secret.Resolver{Store: e.st, Keyring: e.keys, Tokens: e.s}
	creds, err := r.Credentials(ctx, p.ID, []string{stale.ID})
	if err != nil {
		t.Fatal(err)
	}
	access, _ := e.forge.tokens()
	if c := creds[stale.ID]; c.Secret != access || c.Username != "robin" || c.Kind != "gitea" || e.forge.refreshCount() != 1 {
		t.Errorf("resolved %+v after %d refreshes, want the refreshed token %q", c, e.forge.refreshCount(), access)
	}
}

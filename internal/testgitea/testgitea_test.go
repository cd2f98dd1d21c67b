package testgitea

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestOIDC proves the recipe end to end: Gitea starts, and an OAuth2
// authorization code flow with PKCE and OpenID Connect works against it, with
// the browser's part played over plain HTTP.
func TestOIDC(t *testing.T) {
	start := time.Now()
	s := Start(t)
	t.Logf("Gitea started at %s in %v", s.URL, time.Since(start).Round(time.Millisecond))

	var version struct {
		Version string `json:"version"`
	}
	s.API(t, http.MethodGet, "/version", nil, &version)
	t.Logf("Gitea version %s", version.Version)

	aliceID := s.CreateUser(t, "alice", "alice-password", "alice@example.com")
	s.CreateUser(t, "bob", "bob-password", "bob@example.com")
	s.CreateOrg(t, "acme")
	s.AddOrgMember(t, "acme", "alice")

	const redirectURI = "http://127.0.0.1:1/cb"
	clientID, clientSecret := s.CreateOAuthApp(t, "runnel", []string{redirectURI})

	// The provider's metadata.
	var meta struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
		UserinfoEndpoint      string `json:"userinfo_endpoint"`
		JWKSURI               string `json:"jwks_uri"`
	}
	getJSON(t, s.URL+"/.well-known/openid-configuration", "", &meta)
	if meta.Issuer != s.URL {
		t.Errorf("issuer = %q, want %q", meta.Issuer, s.URL)
	}
	if meta.AuthorizationEndpoint != s.URL+"/login/oauth/authorize" || meta.TokenEndpoint != s.URL+"/login/oauth/access_token" {
		t.Errorf("endpoints: %+v", meta)
	}

	verifier := "verifier-" + randomHex(24)
	sum := sha256.Sum256([]byte(verifier))
	authURL := func(state, nonce string) string {
		q := url.Values{
			"client_id":             {clientID},
			"redirect_uri":          {redirectURI},
			"response_type":         {"code"},
			"scope":                 {"openid profile email groups"},
			"state":                 {state},
			"nonce":                 {nonce},
			"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
			"code_challenge_method": {"S256"},
		}
		return meta.AuthorizationEndpoint + "?" + q.Encode()
	}
	callback := func(t *testing.T, cb *url.URL, state string) string {
		t.Helper()
		if cb.Scheme+"://"+cb.Host+cb.Path != redirectURI {
			t.Fatalf("redirected to %s, want %s", cb, redirectURI)
		}
		q := cb.Query()
		if q.Get("state") != state {
			t.Errorf("state = %q, want %q", q.Get("state"), state)
		}
		if q.Get("code") == "" {
			t.Fatalf("no code in %s", cb)
		}
		return q.Get("code")
	}
	exchange := func(code, verifier string) (int, tokenResponse) {
		resp, err := http.PostForm(meta.TokenEndpoint, url.Values{
			"grant_type":    {"authorization_code"},
			"code":          {code},
			"redirect_uri":  {redirectURI},
			"client_id":     {clientID},
			"client_secret": {clientSecret},
			"code_verifier": {verifier},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var tok tokenResponse
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(b, &tok); err != nil {
				t.Fatalf("token response: %v: %s", err, b)
			}
		}
		return resp.StatusCode, tok
	}

	t.Run("code flow", func(t *testing.T) {
		begin := time.Now()
		cb, asked, err := s.authorize(authURL("state-1", "nonce-1"), "alice", "alice-password", true)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("authorized in %v", time.Since(begin).Round(time.Millisecond))
		if !asked {
			t.Error("Gitea granted access without asking on the first authorization")
		}
		code := callback(t, cb, "state-1")

		status, tok := exchange(code, verifier)
		if status != http.StatusOK {
			t.Fatalf("token exchange: %d", status)
		}
		if tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "bearer") || tok.IDToken == "" {
			t.Fatalf("token response: %+v", tok)
		}
		claims := jwtClaims(t, tok.IDToken)
		t.Logf("ID token claims: %v", claims)
		if claims["iss"] != s.URL {
			t.Errorf("iss = %v, want %s", claims["iss"], s.URL)
		}
		if claims["aud"] != clientID && !slices.Contains(anySlice(claims["aud"]), any(clientID)) {
			t.Errorf("aud = %v, want %s", claims["aud"], clientID)
		}
		if claims["sub"] != strconv.FormatInt(aliceID, 10) {
			t.Errorf("sub = %v, want %d", claims["sub"], aliceID)
		}
		if claims["nonce"] != "nonce-1" {
			t.Errorf("nonce = %v", claims["nonce"])
		}
		if claims["preferred_username"] != "alice" || claims["email"] != "alice@example.com" {
			t.Errorf("preferred_username, email = %v, %v", claims["preferred_username"], claims["email"])
		}

		var info struct {
			Sub               string   `json:"sub"`
			PreferredUsername string   `json:"preferred_username"`
			Groups            []string `json:"groups"`
		}
		getJSON(t, meta.UserinfoEndpoint, tok.AccessToken, &info)
		if info.PreferredUsername != "alice" || !slices.Contains(info.Groups, "acme") {
			t.Errorf("userinfo: %+v", info)
		}
		t.Logf("userinfo: %+v", info)

		// A code is good once.
		if status, _ := exchange(code, verifier); status == http.StatusOK {
			t.Error("a code was exchanged twice")
		}
	})

	t.Run("granted before", func(t *testing.T) {
		cb, asked, err := s.authorize(authURL("state-2", "nonce-2"), "alice", "alice-password", true)
		if err != nil {
			t.Fatal(err)
		}
		if asked {
			t.Error("Gitea asked again for a confidential client already granted access")
		}
		code := callback(t, cb, "state-2")
		if status, _ := exchange(code, "wrong-"+verifier); status == http.StatusOK {
			t.Error("a code was exchanged with the wrong PKCE verifier")
		}
	})

	t.Run("denied", func(t *testing.T) {
		cb := s.AuthorizeDeny(t, authURL("state-3", "nonce-3"), "bob", "bob-password")
		if q := cb.Query(); q.Get("error") != "access_denied" || q.Get("state") != "state-3" || q.Get("code") != "" {
			t.Errorf("denied: redirected to %s", cb)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		if cb, err := s.AuthorizeErr(authURL("state-4", "nonce-4"), "bob", "not-bob-password"); err == nil {
			t.Errorf("signed in with a wrong password, redirected to %s", cb)
		} else {
			t.Log(err)
		}
	})

	t.Run("unregistered redirect URI", func(t *testing.T) {
		u, _ := url.Parse(authURL("state-5", "nonce-5"))
		q := u.Query()
		q.Set("redirect_uri", "http://127.0.0.1:2/elsewhere")
		u.RawQuery = q.Encode()
		if cb, err := s.AuthorizeErr(u.String(), "alice", "alice-password"); err == nil {
			t.Errorf("authorized with an unregistered redirect URI, redirected to %s", cb)
		} else {
			t.Log(err)
		}
	})

	t.Run("repositories", func(t *testing.T) {
		for _, owner := range []string{"acme", "alice", s.AdminUser} {
			r := s.CreateRepo(t, owner, "repo-of-"+owner)
			if r.FullName != owner+"/repo-of-"+owner || r.DefaultBranch == "" || r.CloneURL == "" {
				t.Errorf("CreateRepo(%s): %+v", owner, r)
			}
			var branch struct {
				Commit struct {
					ID string `json:"id"`
				} `json:"commit"`
			}
			s.API(t, http.MethodGet, "/repos/"+r.FullName+"/branches/"+r.DefaultBranch, nil, &branch)
			if branch.Commit.ID == "" {
				t.Errorf("%s: no commit on %s", r.FullName, r.DefaultBranch)
			}
		}
		// alice, a member of acme's "members" team, can read its repository.
		var teams []struct {
			Name string `json:"name"`
		}
		s.API(t, http.MethodGet, "/orgs/acme/teams", nil, &teams)
		var members []struct {
			Login string `json:"login"`
		}
		s.API(t, http.MethodGet, "/orgs/acme/members", nil, &members)
		if !slices.ContainsFunc(members, func(m struct {
			Login string `json:"login"`
		}) bool {
			return m.Login == "alice"
		}) {
			t.Errorf("acme's members: %+v (teams %+v)", members, teams)
		}
	})
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
}

func getJSON(t *testing.T, u, bearer string, out any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", u, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, b)
	}
}

// jwtClaims decodes a JWT's payload (without verifying it).
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatalf("JWT payload: %v: %s", err, b)
	}
	return claims
}

func anySlice(v any) []any {
	s, _ := v.([]any)
	return s
}

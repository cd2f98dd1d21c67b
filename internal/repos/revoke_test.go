package repos

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/runnel-ci/runnel/internal/sso"
	"github.com/runnel-ci/runnel/internal/store"
)

// revokeTokens is the Tokens of a connected account at a provider.
type revokeTokens struct{ p sso.Provider }

func (r revokeTokens) AccessToken(context.Context, *store.Credential) (string, error) {
	return "gho_account_token_123", nil
}
func (r revokeTokens) Provider(context.Context, string) (sso.Provider, error) { return r.p, nil }

// TestRevoke: disconnecting revokes the token the way each forge documents
// it (GitHub: DELETE /applications/{client_id}/token with the application's
// basic credentials; GitLab: POST /oauth/revoke per RFC 7009); Gitea and
// Bitbucket have no such call; hand-made credentials are left alone.
func TestRevoke(t *testing.T) {
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, body = r, nil
		body, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cases := []struct {
		kind    sso.Kind
		url     string
		revoked bool
		method  string
		path    string
		check   func(t *testing.T)
	}{
		{sso.KindGitHub, srv.URL, true, "DELETE", "/api/v3/applications/cid/token", func(t *testing.T) {
			user, pass, ok := got.BasicAuth()
			var b map[string]string
			_ = json.Unmarshal(body, &b)
			if !ok || user != "cid" || pass != "csecret" || b["access_token"] != "gho_account_token_123" {
				t.Fatalf("github revoke: auth %q:%q body %s", user, pass, body)
			}
		}},
		{sso.KindGitLab, srv.URL, true, "POST", "/oauth/revoke", func(t *testing.T) {
			f, _ := url.ParseQuery(string(body))
			if f.Get("token") != "gho_account_token_123" || f.Get("client_id") != "cid" || f.Get("client_secret") != "csecret" {
				t.Fatalf("gitlab revoke form: %s", body)
			}
		}},
		{sso.KindGitea, srv.URL, false, "", "", nil},
		{sso.KindBitbucket, srv.URL, false, "", "", nil},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			got = nil
			s := New(Options{Tokens: revokeTokens{sso.Provider{Name: "p", Kind: tc.kind, URL: tc.url, ClientID: "cid", ClientSecret: "csecret"}}})
			ok, err := s.Revoke(context.Background(), &store.Credential{ID: "cred_1", Provider: "p", Kind: string(tc.kind)})
			if err != nil || ok != tc.revoked {
				t.Fatalf("revoke: %v %v", ok, err)
			}
			if !tc.revoked {
				if got != nil {
					t.Fatalf("no call expected, got %s %s", got.Method, got.URL)
				}
				return
			}
			if got == nil || got.Method != tc.method || got.URL.Path != tc.path {
				t.Fatalf("call: %+v", got)
			}
			tc.check(t)
		})
	}
	// A hand-made credential: nothing to revoke.
	s := New(Options{Tokens: revokeTokens{}})
	if ok, err := s.Revoke(context.Background(), &store.Credential{ID: "cred_2", Kind: "github"}); ok || err != nil {
		t.Fatalf("hand-made: %v %v", ok, err)
	}
}

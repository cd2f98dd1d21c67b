package repos

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/sso"
	"github.com/runnel-ci/runnel/internal/store"
)

// Revoke tells the forge a connected account's token is no longer wanted,
// where the forge has a way to: GitHub (DELETE /applications/{client_id}/
// token, the application's credentials as basic authentication) and GitLab
// (POST /oauth/revoke, RFC 7009). Gitea and Bitbucket have none: their
// tokens expire (and the user can revoke the application in the forge's
// settings). Hand-made credentials are left alone. The answer says whether
// the forge revoked it.
func (s *Service) Revoke(ctx context.Context, c *store.Credential) (bool, error) {
	if c.Provider == "" {
		return false, nil
	}
	p, err := s.o.Tokens.Provider(ctx, c.Provider)
	if err != nil {
		return false, err
	}
	tok, err := s.o.Tokens.AccessToken(ctx, c)
	if err != nil {
		return false, err
	}
	switch p.Kind {
	case sso.KindGitHub:
		cn := forge.Conn{Base: p.APIBase(), Token: tok, HC: s.o.HC}
		h := http.Header{}
		h.Set("Accept", "application/vnd.github+json")
		req, _ := http.NewRequest(http.MethodDelete, "http://x", nil)
		req.SetBasicAuth(p.ClientID, p.ClientSecret)
		h.Set("Authorization", req.Header.Get("Authorization"))
		_, err := forge.Call(ctx, cn, forge.KindGitHub, http.MethodDelete,
			cn.Base+"/applications/"+url.PathEscape(p.ClientID)+"/token", h, map[string]string{"access_token": tok})
		if err != nil {
			return false, forgeError(forge.KindGitHub, "revoking the account's token", err)
		}
		return true, nil
	case sso.KindGitLab:
		web := strings.TrimSuffix(strings.TrimSuffix(p.APIBase(), "/api/v4"), "/")
		form := url.Values{"client_id": {p.ClientID}, "client_secret": {p.ClientSecret}, "token": {tok}}
		hc := s.o.HC
		if hc == nil {
			hc = http.DefaultClient
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, web+"/oauth/revoke", strings.NewReader(form.Encode()))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := hc.Do(req)
		if err != nil {
			return false, forgeError(forge.KindGitLab, "revoking the account's token", err)
		}
		res.Body.Close()
		if res.StatusCode/100 != 2 {
			return false, forgeError(forge.KindGitLab, "revoking the account's token", &forge.Error{Kind: forge.KindGitLab,
				Method: http.MethodPost, URL: web + "/oauth/revoke", StatusCode: res.StatusCode, Status: res.Status})
		}
		return true, nil
	}
	return false, nil
}

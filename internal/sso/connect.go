package sso

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/oauth2"

	"github.com/runnel-ci/runnel"
)

// Connecting an account (seed 001's source-code credential) is the same
// authorization code flow as a sign-in, asking for the scopes that read
// repositories, manage webhooks and report commit statuses; it ends with the
// tokens kept, not with a session, and the provider's admission rules (who
// may sign in) do not apply.

// ConnectScopes are the scopes connecting an account asks for: github: repo
// admin:repo_hook read:user user:email; gitlab: api read_user; gitea:
// write:repository write:user read:organization (Gitea's OAuth2
// applications grant these scopes); bitbucket: none (a consumer's
// permissions are set on the consumer: Account, Repositories admin,
// Webhooks read and write, Pull requests read).
func ConnectScopes(k Kind) []string {
	switch k {
	case KindGitHub:
		return []string{"repo", "admin:repo_hook", "read:user", "user:email"}
	case KindGitLab:
		return []string{"api", "read_user"}
	case KindGitea:
		return []string{"write:repository", "write:user", "read:organization"}
	}
	return nil
}

// APIBase is the REST API's base URL of a forge provider (github, gitlab,
// gitea, bitbucket), as Begin and Finish use it.
func (p Provider) APIBase() string {
	web := strings.TrimSuffix(p.URL, "/")
	switch p.Kind {
	case KindGitHub:
		if web == "" || strings.EqualFold(web, GitHubURL) {
			return githubAPI
		}
		return web + "/api/v3"
	case KindGitLab:
		if web == "" {
			web = GitLabURL
		}
		return web + "/api/v4"
	case KindGitea:
		return web + "/api/v1"
	case KindBitbucket:
		if web == "" || strings.EqualFold(web, BitbucketURL) {
			return bitbucketAPI
		}
		return web + "/api/2.0"
	}
	return ""
}

// forConnect is p as a connection uses it: the connect scopes, no OpenID
// Connect, no admission rules.
func (p Provider) forConnect() Provider {
	p.Scopes = ConnectScopes(p.Kind)
	p.AllowedOrgs, p.AllowedDomains = nil, nil
	return p
}

// BeginConnect starts connecting an account with a forge provider: the URL
// to send the browser to and the Pending to keep (as Begin).
func (c *Client) BeginConnect(ctx context.Context, p Provider, redirectURL string) (string, Pending, error) {
	if p.Kind == KindOIDC {
		return "", Pending{}, runnel.Invalidf("provider %q is an OpenID Connect provider, not a forge: accounts connect through github, gitlab, gitea or bitbucket providers", p.Name)
	}
	return c.Begin(ctx, p.forConnect(), redirectURL)
}

// FinishConnect completes a connection (as Finish checks a sign-in) and
// returns the account and its tokens.
func (c *Client) FinishConnect(ctx context.Context, p Provider, pending Pending, gotState, code, redirectURL string) (*Identity, *oauth2.Token, error) {
	p = p.forConnect()
	if err := p.usable(); err != nil {
		return nil, nil, err
	}
	if pending.State == "" || pending.Verifier == "" || pending.Provider != p.Name {
		return nil, nil, runnel.Errorf(runnel.ErrUnauthenticated, "sso: no connection with provider %q is pending for this callback; start again", p.Name)
	}
	if gotState == "" || subtle.ConstantTimeCompare([]byte(gotState), []byte(pending.State)) != 1 {
		return nil, nil, runnel.Errorf(runnel.ErrUnauthenticated,
			"sso: provider %q: the callback's state does not match the connection started in this browser; start again", p.Name)
	}
	if code == "" {
		return nil, nil, runnel.Errorf(runnel.ErrUnauthenticated, "sso: provider %q: the callback carries no authorization code; start again", p.Name)
	}
	if err := checkRedirectURL(redirectURL); err != nil {
		return nil, nil, err
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	f, err := c.flow(ctx, p, redirectURL)
	if err != nil {
		return nil, nil, err
	}
	tok, err := f.oauth.Exchange(c.clientContext(ctx), code, oauth2.VerifierOption(pending.Verifier))
	if err != nil {
		return nil, nil, c.exchangeError(ctx, p, err)
	}
	a := &api{c: c, name: p.Name, kind: p.Kind, token: tok.AccessToken, base: f.apiBase}
	id, _, err := a.identity(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	id.Provider = p.Name
	return id, tok, nil
}

// Refresh exchanges a refresh token for new tokens. A refused refresh
// token is runnel.ErrUnauthenticated (the account must be connected again).
func (c *Client) Refresh(ctx context.Context, p Provider, refreshToken string) (*oauth2.Token, error) {
	p = p.forConnect()
	ctx, cancel := bound(ctx)
	defer cancel()
	f, err := c.flow(ctx, p, "")
	if err != nil {
		return nil, err
	}
	tok, err := f.oauth.TokenSource(c.clientContext(ctx), &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sso: provider %q: refreshing the account's token: %w", p.Name, context.Cause(ctx))
		}
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && (re.ErrorCode == "invalid_client" || re.ErrorCode == "incorrect_client_credentials") {
			return nil, runnel.Errorf(runnel.ErrUpstream, "sso: provider %q refused Runnel's client credentials while refreshing a token (%s): check the provider's clientId and clientSecret", p.Name, clean(re.ErrorCode, 64))
		}
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return nil, runnel.Errorf(runnel.ErrUnauthenticated, "sso: provider %q refused to refresh the account's token (%s); connect the account again", p.Name, clean(re.ErrorCode+" "+re.ErrorDescription, 200))
		}
		return nil, runnel.Errorf(runnel.ErrUpstream, "sso: provider %q: refreshing the account's token: %s", p.Name, clean(err.Error(), 300))
	}
	return tok, nil
}

// Package sso is the protocol side of single sign-on: the OAuth 2.0
// authorization code flow with PKCE (S256) and state against GitHub, GitLab,
// Gitea, Bitbucket and OpenID Connect providers, ending in an Identity that
// the provider's rules (allowedOrgs, allowedDomains) admit.
//
// It stores nothing and serves no route. Begin returns the provider's
// authorization URL and a Pending, which the caller keeps on the server
// (keyed by its State, for a few minutes, used once). Finish checks the
// callback against it, exchanges the code with the PKCE verifier, then
// verifies the ID token (OpenID Connect: signature by the provider's JWKS,
// issuer, audience, expiry, nonce) or reads the forge's user API, and
// applies the rules.
//
// Every call is bounded: response bodies (1 MiB), time (the context, and the
// HTTP client's timeout), redirects (only within the same origin). Access
// tokens and client secrets never appear in errors. A Client is safe for
// concurrent use.
package sso

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/safeurl"
)

// Kind is a kind of identity provider.
type Kind string

// The kinds of provider.
const (
	KindGitHub    Kind = "github"
	KindGitLab    Kind = "gitlab"
	KindGitea     Kind = "gitea"
	KindBitbucket Kind = "bitbucket"
	KindOIDC      Kind = "oidc"
)

// Kinds lists the kinds, in the order messages name them.
func Kinds() []Kind {
	return []Kind{KindGitHub, KindGitLab, KindGitea, KindBitbucket, KindOIDC}
}

// The public services' addresses, used when Provider.URL is empty.
const (
	GitHubURL    = "https://github.com"
	GitLabURL    = "https://gitlab.com"
	BitbucketURL = "https://bitbucket.org"

	githubAPI    = "https://api.github.com"
	bitbucketAPI = "https://api.bitbucket.org/2.0"
)

// Provider is one configured identity provider.
type Provider struct {
	// Name is the provider's slug in Runnel's URLs (/…/sso/NAME/callback).
	Name string
	Kind Kind
	// ClientID and ClientSecret are the OAuth application's. The secret
	// may be empty for gitlab, gitea and oidc public clients (PKCE alone).
	ClientID     string
	ClientSecret string
	// URL is the web base URL for github (GitHub Enterprise Server: its API
	// is URL/api/v3), gitlab (API at URL/api/v4), gitea (URL/api/v1) and
	// bitbucket (Bitbucket Cloud; another URL stands in for it with its API
	// at URL/api/2.0), and the issuer for oidc. Empty means the public
	// service (github.com, gitlab.com, bitbucket.org); gitea and oidc
	// require it.
	URL string
	// Scopes replace the kind's defaults (RequestedScopes). For gitea,
	// scopes that include openid make the sign-in OpenID Connect against
	// Gitea's issuer (URL), with groups from the ID token's groups claim.
	Scopes []string
	// AllowedOrgs, when set, admits only members of one of them (names
	// compared without case): GitHub organisations, GitLab groups (full
	// path), Gitea organisations, Bitbucket workspaces (slug), OpenID
	// Connect groups (the groups claim).
	AllowedOrgs []string
	// AllowedDomains, when set, admits only users with a verified email
	// address in one of these domains (exactly: sub.example.com is not
	// example.com).
	AllowedDomains []string
	// DisplayName is how the sign-in page names the provider.
	DisplayName string
}

// Pending is a sign-in between Begin and Finish. The caller keeps it on the
// server (never in the browser), keyed by State, for a few minutes, and
// hands it to Finish at most once.
type Pending struct {
	// Provider is the Name of the provider the sign-in was started with.
	Provider string
	// State is sent to the provider and must come back with the code.
	State string
	// Nonce is bound into the ID token (OpenID Connect).
	Nonce string
	// Verifier is the PKCE code verifier, sent with the code.
	Verifier string
}

// Identity is who signed in, as the provider says, cleaned so that Runnel's
// user rules accept each field (an invalid email or avatar URL is left out).
type Identity struct {
	// Provider is the Name of the provider.
	Provider string
	// Subject is the user's stable id at the provider: the forge's numeric
	// user id (Bitbucket: the account's UUID), or the ID token's sub.
	Subject string
	// Login is a suggested login: the forge's username, or the
	// preferred_username claim, cut to ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$
	// ("" when nothing usable is left).
	Login string
	Name  string
	// Email is the primary address (or, under AllowedDomains, the verified
	// address in an allowed domain); EmailVerified says whether the
	// provider verified it.
	Email         string
	EmailVerified bool
	AvatarURL     string
	// Orgs are the organisations, groups or workspaces the user belongs
	// to: read from forges only when AllowedOrgs is set; the groups claim
	// for OpenID Connect.
	Orgs []string
}

// Client runs sign-ins. Its zero value is not usable: call New.
type Client struct {
	hc  *http.Client
	ttl time.Duration

	mu        sync.Mutex
	discovery map[string]*discovered
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with hc's transport and
// timeout (the server's outbound client; a test's). Its redirect policy and
// cookie jar are replaced: redirects are followed only within the same
// origin, and no cookie is kept. A zero timeout becomes 30 seconds.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = wrapClient(hc)
		}
	}
}

// WithDiscoveryTTL sets how long an OpenID Connect provider's discovery
// document (and with it its key set) is kept before it is read again
// (default one hour).
func WithDiscoveryTTL(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.ttl = d
		}
	}
}

// New returns a Client.
func New(opts ...Option) *Client {
	c := &Client{ttl: time.Hour, discovery: map[string]*discovered{}}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = wrapClient(&http.Client{})
	}
	return c
}

// finishTimeout bounds Begin and Finish when the caller's context has no
// deadline: discovery, the token exchange and the user API calls together.
const finishTimeout = time.Minute

// Begin starts a sign-in: the URL to send the browser to, and the Pending
// to keep until the provider redirects back to redirectURL. For OpenID
// Connect it reads the provider's discovery document (cached).
func (c *Client) Begin(ctx context.Context, p Provider, redirectURL string) (authURL string, pending Pending, err error) {
	if err := p.usable(); err != nil {
		return "", Pending{}, err
	}
	if err := checkRedirectURL(redirectURL); err != nil {
		return "", Pending{}, err
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	f, err := c.flow(ctx, p, redirectURL)
	if err != nil {
		return "", Pending{}, err
	}
	pending = Pending{Provider: p.Name, State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier()}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(pending.Verifier)}
	if f.oidc != nil {
		opts = append(opts, oauth2.SetAuthURLParam("nonce", pending.Nonce))
	}
	return f.oauth.AuthCodeURL(pending.State, opts...), pending, nil
}

// Finish completes a sign-in: gotState and code are the callback's state
// and code query parameters (see CallbackError for a callback that carries
// an error instead), redirectURL the one Begin was given. It checks the
// state against pending's, exchanges the code with pending's verifier, reads
// who signed in and applies the provider's rules.
//
// Errors: a state, code or ID token that does not check wraps
// runnel.ErrUnauthenticated; a user the rules refuse, runnel.ErrForbidden
// (the message names the rule); a provider that fails or answers what it
// should not, runnel.ErrUpstream; a provider that fails Check,
// runnel.ErrUnavailable. The context's end is returned as such.
func (c *Client) Finish(ctx context.Context, p Provider, pending Pending, gotState, code, redirectURL string) (*Identity, error) {
	if err := p.usable(); err != nil {
		return nil, err
	}
	if pending.State == "" || pending.Verifier == "" || pending.Nonce == "" {
		return nil, runnel.Errorf(runnel.ErrUnauthenticated, "sso: no sign-in is pending for this callback; start again")
	}
	if pending.Provider != p.Name {
		return nil, runnel.Errorf(runnel.ErrUnauthenticated,
			"sso: this sign-in was started with provider %q, not %q; start again", pending.Provider, p.Name)
	}
	if gotState == "" || subtle.ConstantTimeCompare([]byte(gotState), []byte(pending.State)) != 1 {
		return nil, runnel.Errorf(runnel.ErrUnauthenticated,
			"sso: provider %q: the callback's state does not match the sign-in started in this browser; start again", p.Name)
	}
	if code == "" {
		return nil, runnel.Errorf(runnel.ErrUnauthenticated, "sso: provider %q: the callback carries no authorization code; start again", p.Name)
	}
	if err := checkRedirectURL(redirectURL); err != nil {
		return nil, err
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	f, err := c.flow(ctx, p, redirectURL)
	if err != nil {
		return nil, err
	}
	tok, err := f.oauth.Exchange(c.clientContext(ctx), code, oauth2.VerifierOption(pending.Verifier))
	if err != nil {
		return nil, c.exchangeError(ctx, p, err)
	}
	var (
		id       *Identity
		verified []string // every verified email address
	)
	if f.oidc != nil {
		id, verified, err = c.oidcIdentity(ctx, p, f.oidc, tok, pending.Nonce)
	} else {
		a := &api{c: c, name: p.Name, kind: p.Kind, token: tok.AccessToken, base: f.apiBase}
		id, verified, err = a.identity(ctx, p)
	}
	if err != nil {
		return nil, err
	}
	id.Provider = p.Name
	if err := p.admit(id, verified); err != nil {
		return nil, err
	}
	return id, nil
}

// CallbackError reads the error a provider redirected back with instead of
// a code (RFC 6749 §4.1.2.1: error, error_description): nil when query has
// none. A user who declined is runnel.ErrForbidden; anything else
// runnel.ErrUpstream. The provider's words are quoted bounded and cleaned.
func CallbackError(providerName string, query url.Values) error {
	code := query.Get("error")
	if code == "" {
		return nil
	}
	msg := clean(code, 64)
	if d := clean(query.Get("error_description"), 200); d != "" {
		msg += ": " + d
	}
	if code == "access_denied" {
		return runnel.Errorf(runnel.ErrForbidden, "sso: provider %q: the sign-in was declined (%s)", providerName, msg)
	}
	return runnel.Errorf(runnel.ErrUpstream, "sso: provider %q: the provider ended the sign-in with an error (%s)", providerName, msg)
}

// flow is what one sign-in with a provider needs.
type flow struct {
	oauth   *oauth2.Config
	oidc    *discovered // nil: a forge's user API
	apiBase string
}

func (c *Client) flow(ctx context.Context, p Provider, redirectURL string) (*flow, error) {
	cfg := &oauth2.Config{
		ClientID:     p.ClientID,
		ClientSecret: p.ClientSecret,
		RedirectURL:  redirectURL,
		Scopes:       p.RequestedScopes(),
	}
	if p.openIDConnect() {
		d, err := c.discover(ctx, p)
		if err != nil {
			return nil, err
		}
		cfg.Endpoint = oauth2.Endpoint{AuthURL: d.authURL, TokenURL: d.tokenURL, AuthStyle: d.authStyle(p.ClientSecret)}
		return &flow{oauth: cfg, oidc: d}, nil
	}
	web := strings.TrimSuffix(p.URL, "/")
	f := &flow{oauth: cfg}
	switch p.Kind {
	case KindGitHub:
		if web == "" || strings.EqualFold(web, GitHubURL) {
			web, f.apiBase = GitHubURL, githubAPI
		} else {
			f.apiBase = web + "/api/v3"
		}
		cfg.Endpoint = oauth2.Endpoint{AuthURL: web + "/login/oauth/authorize", TokenURL: web + "/login/oauth/access_token"}
	case KindGitLab:
		if web == "" {
			web = GitLabURL
		}
		f.apiBase = web + "/api/v4"
		cfg.Endpoint = oauth2.Endpoint{AuthURL: web + "/oauth/authorize", TokenURL: web + "/oauth/token"}
	case KindGitea:
		f.apiBase = web + "/api/v1"
		cfg.Endpoint = oauth2.Endpoint{AuthURL: web + "/login/oauth/authorize", TokenURL: web + "/login/oauth/access_token"}
	case KindBitbucket:
		if web == "" || strings.EqualFold(web, BitbucketURL) {
			web, f.apiBase = BitbucketURL, bitbucketAPI
		} else {
			f.apiBase = web + "/api/2.0"
		}
		cfg.Endpoint = oauth2.Endpoint{AuthURL: web + "/site/oauth2/authorize", TokenURL: web + "/site/oauth2/access_token"}
	}
	// Each forge documents the client's credentials in the form (Bitbucket:
	// basic authentication); saying so saves oauth2's probing, which would
	// send a refused code a second time.
	cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	if p.Kind == KindBitbucket && p.ClientSecret != "" {
		cfg.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	return f, nil
}

// RequestedScopes are the scopes a sign-in asks for: Scopes when set, else
// the kind's defaults, which read the profile and email addresses, and the
// memberships when AllowedOrgs is set — github: read:user user:email
// (read:org); gitlab: read_user (read_api); gitea: read:user
// (read:organization); bitbucket: none (a consumer's permissions are set on
// the consumer: Account and Email, Workspace membership to read); oidc:
// openid profile email (add groups to Scopes if the provider needs it for
// the groups claim).
func (p Provider) RequestedScopes() []string {
	if len(p.Scopes) > 0 {
		return slices.Clone(p.Scopes)
	}
	orgs := len(p.AllowedOrgs) > 0
	switch p.Kind {
	case KindGitHub:
		if orgs {
			return []string{"read:user", "user:email", "read:org"}
		}
		return []string{"read:user", "user:email"}
	case KindGitLab:
		if orgs {
			return []string{"read_user", "read_api"}
		}
		return []string{"read_user"}
	case KindGitea:
		if orgs {
			return []string{"read:user", "read:organization"}
		}
		return []string{"read:user"}
	case KindOIDC:
		return []string{"openid", "profile", "email"}
	}
	return nil
}

// openIDConnect reports whether the sign-in is OpenID Connect: kind oidc,
// or gitea asked for the openid scope.
func (p Provider) openIDConnect() bool {
	return p.Kind == KindOIDC || (p.Kind == KindGitea && slices.Contains(p.Scopes, "openid"))
}

// usable is Check as Begin and Finish report it: a provider that does not
// check is the server's configuration, not the caller's request.
func (p Provider) usable() error {
	if err := p.CheckAt("provider"); err != nil {
		var de *runnel.Error
		msg := err.Error()
		if errors.As(err, &de) {
			msg = de.Msg
		}
		return runnel.Errorf(runnel.ErrUnavailable, "sso: provider %q is misconfigured: %s", p.Name, msg)
	}
	return nil
}

// admit applies AllowedOrgs and AllowedDomains to id; verified are the
// user's verified email addresses.
func (p Provider) admit(id *Identity, verified []string) error {
	who := id.Login
	if who == "" {
		who = "user " + id.Subject
	}
	if len(p.AllowedOrgs) > 0 {
		ok := false
		for _, o := range id.Orgs {
			if slices.ContainsFunc(p.AllowedOrgs, func(a string) bool { return strings.EqualFold(a, o) }) {
				ok = true
				break
			}
		}
		if !ok {
			what := "organisation"
			if p.openIDConnect() {
				what = "group (groups claim)"
			}
			return runnel.Errorf(runnel.ErrForbidden,
				"sso: provider %q: %s is not a member of any %s allowed to sign in (allowedOrgs)", p.Name, who, what)
		}
	}
	if len(p.AllowedDomains) > 0 {
		allowed := func(addr string) bool {
			d := emailDomain(addr)
			return d != "" && slices.ContainsFunc(p.AllowedDomains, func(a string) bool { return strings.EqualFold(a, d) })
		}
		switch {
		case id.EmailVerified && allowed(id.Email):
		default:
			i := slices.IndexFunc(verified, allowed)
			if i < 0 {
				return runnel.Errorf(runnel.ErrForbidden,
					"sso: provider %q: %s has no verified email address in a domain allowed to sign in (allowedDomains)", p.Name, who)
			}
			id.Email, id.EmailVerified = verified[i], true
		}
	}
	return nil
}

// exchangeError words a failed code exchange.
func (c *Client) exchangeError(ctx context.Context, p Provider, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("sso: provider %q: exchanging the authorization code: %w", p.Name, context.Cause(ctx))
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return runnel.Errorf(runnel.ErrUpstream, "sso: provider %q: exchanging the authorization code: %s",
			p.Name, redact(describe(err), p.ClientSecret))
	}
	what := clean(re.ErrorCode, 64)
	if d := clean(re.ErrorDescription, 200); d != "" {
		what += ": " + d
	}
	what = redact(what, p.ClientSecret)
	status := ""
	if re.Response != nil {
		status = fmt.Sprintf("HTTP %d", re.Response.StatusCode)
		if what == "" {
			what = status
		}
	}
	switch re.ErrorCode {
	case "invalid_grant", "bad_verification_code": // GitHub's word for it
		return runnel.Errorf(runnel.ErrUnauthenticated,
			"sso: provider %q refused the authorization code (%s): it expired, was used already or does not match this sign-in's PKCE verifier; start again",
			p.Name, what)
	case "unauthorized_client":
		// Gitea answers so for a code used before, a PKCE verifier that
		// does not match and a wrong client secret alike; its description
		// tells them apart.
		return runnel.Errorf(runnel.ErrUnauthenticated,
			"sso: provider %q refused the authorization code (%s): it expired, was used already or does not match this sign-in's PKCE verifier, or clientId and clientSecret are wrong; start again",
			p.Name, what)
	case "invalid_client", "incorrect_client_credentials": // GitHub's
		return runnel.Errorf(runnel.ErrUpstream,
			"sso: provider %q refused Runnel's client credentials (%s): check clientId and clientSecret", p.Name, what)
	case "redirect_uri_mismatch":
		return runnel.Errorf(runnel.ErrUpstream,
			"sso: provider %q refused the callback URL (%s): register Runnel's callback URL with the OAuth application", p.Name, what)
	}
	return runnel.Errorf(runnel.ErrUpstream, "sso: provider %q: the token endpoint refused the authorization code (%s)", p.Name, what)
}

// checkRedirectURL accepts an absolute http(s) URL without a fragment.
func checkRedirectURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" || u.User != nil || len(raw) > 2048 {
		return runnel.Invalidf("sso: redirectURL: must be an absolute http(s) URL without credentials or fragment; got %q", safeurl.Redact(raw))
	}
	return nil
}

// bound gives ctx a deadline when it has none.
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, finishTimeout)
}

// random is 32 random bytes, base64url: 256 bits, URL-safe.
func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// clientContext carries the Client's HTTP client to oauth2 and go-oidc.
func (c *Client) clientContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.hc)
}

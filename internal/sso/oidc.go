package sso

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/safeurl"
)

// signingAlgs are the ID token signatures accepted: asymmetric ones only
// (the key set is public; HS256 would need the client secret as key).
var signingAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA,
}

// discovered is an OpenID Connect provider as its discovery document
// describes it, with go-oidc's provider (which keeps the key set, fetched
// when first needed and again on an unknown key id).
type discovered struct {
	issuer      string
	authURL     string
	tokenURL    string
	userInfoURL string
	authMethods []string
	provider    *oidc.Provider
	fetched     time.Time
}

// authStyle is how the client authenticates at the token endpoint: in the
// form for a public client (no secret) or a provider that only takes
// client_secret_post, else HTTP basic (the default of the standard).
func (d *discovered) authStyle(secret string) oauth2.AuthStyle {
	if secret == "" {
		return oauth2.AuthStyleInParams
	}
	if len(d.authMethods) > 0 && !slices.Contains(d.authMethods, "client_secret_basic") && slices.Contains(d.authMethods, "client_secret_post") {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

// discover returns the provider's discovery, cached per issuer for the
// Client's TTL.
func (c *Client) discover(ctx context.Context, p Provider) (*discovered, error) {
	key := strings.TrimSuffix(p.URL, "/")
	now := time.Now()
	c.mu.Lock()
	d := c.discovery[key]
	c.mu.Unlock()
	if d != nil && now.Sub(d.fetched) < c.ttl {
		return d, nil
	}
	d, err := c.fetchDiscovery(ctx, p, key)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, old := range c.discovery {
		if now.Sub(old.fetched) >= c.ttl {
			delete(c.discovery, k)
		}
	}
	c.discovery[key] = d
	return d, nil
}

func (c *Client) fetchDiscovery(ctx context.Context, p Provider, base string) (*discovered, error) {
	var doc struct {
		Issuer      string   `json:"issuer"`
		AuthURL     string   `json:"authorization_endpoint"`
		TokenURL    string   `json:"token_endpoint"`
		JWKSURL     string   `json:"jwks_uri"`
		UserInfoURL string   `json:"userinfo_endpoint"`
		Algorithms  []string `json:"id_token_signing_alg_values_supported"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	where := base + "/.well-known/openid-configuration"
	if _, err := c.getJSON(ctx, p.Name, where, "", nil, "", &doc); err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) error {
		return runnel.Errorf(runnel.ErrUpstream, "sso: provider %q: discovery document %s: %s", p.Name, safeurl.Origin(where), fmt.Sprintf(format, args...))
	}
	// The issuer is what ID tokens must name exactly; the configured URL
	// may differ from it by a trailing slash (Gitea's issuer ends in one).
	if strings.TrimSuffix(doc.Issuer, "/") != base {
		return nil, fail("it names the issuer %q, not %q: set url to the issuer", clean(doc.Issuer, 200), p.URL)
	}
	// An https issuer's endpoints are https too.
	secure, want := strings.HasPrefix(base, "https://"), "http(s)"
	if secure {
		want = "https"
	}
	for _, e := range []struct{ name, v string }{
		{"authorization_endpoint", doc.AuthURL}, {"token_endpoint", doc.TokenURL}, {"jwks_uri", doc.JWKSURL}, {"userinfo_endpoint", doc.UserInfoURL},
	} {
		if e.v == "" && e.name == "userinfo_endpoint" {
			continue
		}
		u, err := url.Parse(e.v)
		if err != nil || u.Host == "" || (u.Scheme != "https" && (secure || u.Scheme != "http")) {
			return nil, fail("%s %q is not an absolute %s URL", e.name, clean(e.v, 200), want)
		}
	}
	var algs []string
	for _, a := range doc.Algorithms {
		if slices.Contains(signingAlgs, a) {
			algs = append(algs, a)
		}
	}
	if len(doc.Algorithms) > 0 && len(algs) == 0 {
		return nil, fail("ID tokens are signed with %s only; Runnel accepts %s", clean(strings.Join(doc.Algorithms, ", "), 200), strings.Join(signingAlgs, ", "))
	}
	if len(algs) == 0 {
		algs = []string{oidc.RS256}
	}
	cfg := &oidc.ProviderConfig{
		IssuerURL:   doc.Issuer,
		AuthURL:     doc.AuthURL,
		TokenURL:    doc.TokenURL,
		UserInfoURL: doc.UserInfoURL,
		JWKSURL:     doc.JWKSURL,
		Algorithms:  algs,
	}
	return &discovered{
		issuer:      doc.Issuer,
		authURL:     doc.AuthURL,
		tokenURL:    doc.TokenURL,
		userInfoURL: doc.UserInfoURL,
		authMethods: doc.AuthMethods,
		// The key set outlives this request: it gets the client, not ctx.
		provider: cfg.NewProvider(oidc.ClientContext(context.Background(), c.hc)),
		fetched:  time.Now(),
	}, nil
}

// claims are the ID token's (and the userinfo answer's) claims Runnel reads.
type claims struct {
	Subject           string          `json:"sub"`
	PreferredUsername string          `json:"preferred_username"`
	Nickname          string          `json:"nickname"`
	Name              string          `json:"name"`
	Email             string          `json:"email"`
	EmailVerified     json.RawMessage `json:"email_verified"`
	Picture           string          `json:"picture"`
	Groups            json.RawMessage `json:"groups"`
	AuthorizedParty   string          `json:"azp"`
}

// oidcIdentity verifies the token response's ID token and reads who it
// names; the userinfo endpoint fills what the ID token leaves out.
func (c *Client) oidcIdentity(ctx context.Context, p Provider, d *discovered, tok *oauth2.Token, nonce string) (*Identity, []string, error) {
	unauth := func(format string, args ...any) error {
		return runnel.Errorf(runnel.ErrUnauthenticated, "sso: provider %q: %s", p.Name, fmt.Sprintf(format, args...))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		hint := "is openid among the scopes?"
		if p.Kind == KindGitea {
			hint += " " + giteaGrants
		}
		return nil, nil, runnel.Errorf(runnel.ErrUpstream, "sso: provider %q: the token response carries no id_token (%s)", p.Name, hint)
	}
	v := d.provider.Verifier(&oidc.Config{ClientID: p.ClientID})
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		var exp *oidc.TokenExpiredError
		switch {
		case ctx.Err() != nil:
			return nil, nil, fmt.Errorf("sso: provider %q: verifying the ID token: %w", p.Name, context.Cause(ctx))
		case errors.As(err, &exp):
			return nil, nil, unauth("the ID token expired at %s (are the clocks of Runnel and the provider right?)", exp.Expiry.UTC().Format(time.RFC3339))
		}
		return nil, nil, unauth("the ID token does not verify: %s", redact(clean(err.Error(), 300), tok.AccessToken))
	}
	if idt.Nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, nil, unauth("the ID token's nonce does not match this sign-in's; start again")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, nil, unauth("the ID token's at_hash does not match the access token")
		}
	}
	var cl claims
	if err := idt.Claims(&cl); err != nil {
		return nil, nil, runnel.Errorf(runnel.ErrUpstream, "sso: provider %q: reading the ID token's claims: %s", p.Name, clean(err.Error(), 200))
	}
	if len(idt.Audience) > 1 && cl.AuthorizedParty != "" && cl.AuthorizedParty != p.ClientID {
		return nil, nil, unauth("the ID token was issued to another client (azp)")
	}
	if cl.needsUserInfo(len(p.AllowedOrgs) > 0) && d.userInfoURL != "" {
		var ui claims
		if _, err := c.getJSON(ctx, p.Name, d.userInfoURL, tok.AccessToken, nil, scopeHint(p.Kind), &ui); err != nil {
			return nil, nil, err
		}
		if ui.Subject != cl.Subject {
			return nil, nil, runnel.Errorf(runnel.ErrUpstream, "sso: provider %q: the userinfo endpoint describes another subject than the ID token", p.Name)
		}
		cl.fill(ui)
	}
	id, err := cl.identity()
	if err != nil {
		return nil, nil, runnel.Errorf(runnel.ErrUpstream, "sso: provider %q: the ID token %s", p.Name, err)
	}
	var verified []string
	if id.EmailVerified {
		verified = []string{id.Email}
	}
	return id, verified, nil
}

// needsUserInfo reports whether the ID token leaves out what the userinfo
// endpoint may have: the login, the email address, the groups.
func (cl *claims) needsUserInfo(groups bool) bool {
	return (cl.PreferredUsername == "" && cl.Nickname == "") || cl.Email == "" || (groups && len(cl.Groups) == 0)
}

// fill takes from ui the claims cl lacks.
func (cl *claims) fill(ui claims) {
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	set(&cl.PreferredUsername, ui.PreferredUsername)
	set(&cl.Nickname, ui.Nickname)
	set(&cl.Name, ui.Name)
	set(&cl.Picture, ui.Picture)
	if cl.Email == "" {
		cl.Email, cl.EmailVerified = ui.Email, ui.EmailVerified
	}
	if len(cl.Groups) == 0 {
		cl.Groups = ui.Groups
	}
}

// identity is who the claims name. The email address is verified when
// email_verified is true (or "true", as some providers send it).
func (cl *claims) identity() (*Identity, error) {
	sub := cl.Subject
	if sub == "" || len(sub) > 255 || strings.IndexFunc(sub, badTokenRune) >= 0 {
		return nil, fmt.Errorf("has no usable sub claim")
	}
	id := &Identity{Subject: sub, Name: cleanName(cl.Name), Email: cleanEmail(cl.Email), AvatarURL: cleanAvatar(cl.Picture)}
	var b bool
	var s string
	switch {
	case json.Unmarshal(cl.EmailVerified, &b) == nil:
	case json.Unmarshal(cl.EmailVerified, &s) == nil:
		b = strings.EqualFold(s, "true")
	}
	id.EmailVerified = b && id.Email != ""
	for _, cand := range []string{cl.PreferredUsername, cl.Nickname, localPart(id.Email)} {
		if id.Login = sanitizeLogin(cand); id.Login != "" {
			break
		}
	}
	var groups []string
	if json.Unmarshal(cl.Groups, &groups) != nil {
		var one string
		if json.Unmarshal(cl.Groups, &one) == nil {
			groups = []string{one}
		}
	}
	for _, g := range groups {
		id.Orgs = appendName(id.Orgs, g)
	}
	return id, nil
}

// Package signin is single sign-on as Runnel serves it: the providers an
// admin configures (client secrets sealed, never shown), sign-ins started
// and finished over package sso with their state kept in the database (one
// use, ten minutes, any replica may finish what another began), the users
// a first sign-in provisions, and browser sessions (an HttpOnly cookie whose
// value only the browser holds; the database keeps its SHA-256).
package signin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/identity"
	"github.com/runnel-ci/runnel/internal/sso"
	"github.com/runnel-ci/runnel/internal/store"
)

// Store is what the service reads and writes.
type Store interface {
	store.SignIn
	store.Users
	store.Credentials
}

// Keys seal and open client secrets (the server's keyring).
type Keys interface {
	Seal(id string, value []byte) (ciphertext []byte, keyID string)
	Open(id string, ciphertext []byte, keyID string) ([]byte, error)
}

// Defaults of Options.
const (
	DefaultSessionTTL = 12 * time.Hour
	LoginTTL          = 10 * time.Minute
	// CookieName is the session cookie's name.
	CookieName = "runnel_session"
)

// Options configure a Service. Store and SSO are required; without Keys
// providers cannot be created (their secrets could not be sealed).
type Options struct {
	Store Store
	Keys  Keys
	SSO   *sso.Client
	// Identity makes the command line's tokens (nil: runnel login is
	// refused).
	Identity *identity.Service
	// SessionTTL is how long a session lasts from its creation.
	SessionTTL time.Duration
	Clock      func() time.Time
}

// Service is the sign-in service; safe for concurrent use, it keeps no
// state of its own.
type Service struct{ o Options }

// New returns a service for o.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	return &Service{o: o}
}

func (s *Service) now() time.Time { return s.o.Clock().UTC() }

func requireAdmin(ctx context.Context, what string) error {
	if c, ok := runnel.PrincipalFrom(ctx); ok && !c.SiteAdmin() {
		return runnel.Errorf(runnel.ErrForbidden, "%s needs a site admin", what)
	}
	return nil
}

// ProviderInput is a provider as an admin gives it; on an update nil
// fields keep their value (ClientSecret nil: the stored secret stays).
type ProviderInput struct {
	Name           string
	Kind           *string
	DisplayName    *string
	URL            *string
	ClientID       *string
	ClientSecret   *string
	Scopes         []string
	AllowedOrgs    []string
	AllowedDomains []string
	// SignIn and Connect say what the provider serves: signing users in,
	// connecting their forge accounts (nil: keep; on creation, sign-in on
	// and connect on for forges).
	SignIn, Connect *bool
	// The lists are set when their Set flag is.
	ScopesSet, AllowedOrgsSet, AllowedDomainsSet bool
	// Where names where the input came from in error messages ("" the
	// request's body; "--sso-provider gitea" for a flag).
	Where string
}

func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// toSSO is the protocol's view of a stored provider, its secret opened.
func (s *Service) toSSO(p *store.AuthProvider) (sso.Provider, error) {
	out := sso.Provider{Name: p.Name, Kind: sso.Kind(p.Kind), ClientID: p.ClientID, URL: p.URL, Scopes: p.Scopes,
		AllowedOrgs: p.AllowedOrgs, AllowedDomains: p.AllowedDomains, DisplayName: p.DisplayName}
	if len(out.Scopes) == 0 {
		out.Scopes = nil
	}
	if len(p.Ciphertext) > 0 {
		if s.o.Keys == nil {
			return out, runnel.Errorf(runnel.ErrUnavailable, "provider %s: the server has no key to open its client secret", p.Name)
		}
		v, err := s.o.Keys.Open(p.SealID(), p.Ciphertext, p.KeyID)
		if err != nil {
			return out, fmt.Errorf("provider %s: open its client secret: %w", p.Name, err)
		}
		out.ClientSecret = string(v)
	}
	return out, nil
}

// apply sets the fields of in on p (the secret as given, to be sealed).
func (in ProviderInput) apply(p *store.AuthProvider, secret *string) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&p.Kind, in.Kind)
	set(&p.DisplayName, in.DisplayName)
	set(&p.URL, in.URL)
	set(&p.ClientID, in.ClientID)
	if in.ClientSecret != nil {
		*secret = *in.ClientSecret
	}
	if in.ScopesSet {
		p.Scopes = orEmpty(in.Scopes)
	}
	if in.AllowedOrgsSet {
		p.AllowedOrgs = orEmpty(in.AllowedOrgs)
	}
	if in.AllowedDomainsSet {
		p.AllowedDomains = orEmpty(in.AllowedDomains)
	}
	if in.SignIn != nil {
		p.SignIn = *in.SignIn
	}
	if in.Connect != nil {
		p.Connect = *in.Connect
	}
}

// check validates p with secret the way a sign-in would use it; where
// prefixes the fields' names ("": body).
func (s *Service) check(p *store.AuthProvider, secret, where string) error {
	sp := sso.Provider{Name: p.Name, Kind: sso.Kind(p.Kind), ClientID: p.ClientID, ClientSecret: secret, URL: p.URL,
		Scopes: p.Scopes, AllowedOrgs: p.AllowedOrgs, AllowedDomains: p.AllowedDomains, DisplayName: p.DisplayName}
	if len(sp.Scopes) == 0 {
		sp.Scopes = nil
	}
	if where == "" {
		where = "body"
	}
	if err := sp.CheckAt(where); err != nil {
		return err
	}
	sep := "."
	if strings.HasPrefix(where, "--") {
		sep = " "
	}
	if p.Connect && p.Kind == string(sso.KindOIDC) {
		return runnel.Invalidf("%s%sconnect: an oidc provider signs users in only; accounts connect through github, gitlab, gitea or bitbucket", where, sep)
	}
	if !p.SignIn && !p.Connect {
		return runnel.Invalidf("%s%ssignIn: a provider serves sign-in, account connection or both; both are off", where, sep)
	}
	return nil
}

// CreateProvider configures a provider (site admins).
func (s *Service) CreateProvider(ctx context.Context, in ProviderInput) (*store.AuthProvider, error) {
	if err := requireAdmin(ctx, "configuring sign-in providers"); err != nil {
		return nil, err
	}
	if s.o.Keys == nil {
		return nil, runnel.Errorf(runnel.ErrUnavailable, "sign-in providers need the server's secret key (--secret-key) to seal their client secrets")
	}
	now := s.now()
	p := &store.AuthProvider{Name: in.Name, CreatedAt: now, UpdatedAt: now, Scopes: []string{}, AllowedOrgs: []string{}, AllowedDomains: []string{},
		SignIn: true}
	var secret string
	in.apply(p, &secret)
	if in.Connect == nil {
		p.Connect = p.Kind != string(sso.KindOIDC)
	}
	if err := s.check(p, secret, in.Where); err != nil {
		return nil, err
	}
	p.Ciphertext, p.KeyID = s.o.Keys.Seal(p.SealID(), []byte(secret))
	if err := s.o.Store.CreateAuthProvider(ctx, p); err != nil {
		if errors.Is(err, runnel.ErrConflict) {
			return nil, runnel.Errorf(runnel.ErrConflict, "body.name: a provider %s exists; change it with PUT /api/v1/auth/providers/%s", p.Name, p.Name)
		}
		return nil, fmt.Errorf("create provider %s: %w", p.Name, err)
	}
	return p, nil
}

// UpdateProvider changes a provider's fields (site admins).
func (s *Service) UpdateProvider(ctx context.Context, in ProviderInput) (*store.AuthProvider, error) {
	if err := requireAdmin(ctx, "configuring sign-in providers"); err != nil {
		return nil, err
	}
	p, err := s.o.Store.GetAuthProvider(ctx, in.Name)
	if err != nil {
		return nil, runnel.About(err, "get", "provider", in.Name)
	}
	cur, err := s.toSSO(p)
	if err != nil {
		return nil, err
	}
	secret := cur.ClientSecret
	in.apply(p, &secret)
	if err := s.check(p, secret, in.Where); err != nil {
		return nil, err
	}
	p.Ciphertext, p.KeyID = s.o.Keys.Seal(p.SealID(), []byte(secret))
	p.UpdatedAt = s.now()
	return p, runnel.About(s.o.Store.UpdateAuthProvider(ctx, p), "update", "provider", in.Name)
}

// Ensure creates provider in.Name, or replaces its configuration, as a
// server's flags describe it (Runnel's own work: no caller is checked).
func (s *Service) Ensure(ctx context.Context, in ProviderInput) (*store.AuthProvider, error) {
	_, err := s.o.Store.GetAuthProvider(ctx, in.Name)
	if errors.Is(err, runnel.ErrNotFound) {
		return s.CreateProvider(ctx, in)
	}
	if err != nil {
		return nil, err
	}
	return s.UpdateProvider(ctx, in)
}

// ParseProviderFlag reads a provider as --sso-provider gives it: fields
// separated by spaces, each key=value, lists comma-separated, e.g.
// "name=gitea kind=gitea url=https://git.example.com client-id=abc allowed-orgs=acme,ops".
// The client secret is not among them (it comes from the environment).
func ParseProviderFlag(v string) (ProviderInput, error) {
	in := ProviderInput{Where: "--sso-provider"}
	str := func(s string) *string { return &s }
	list := func(s string) []string {
		var out []string
		for _, x := range strings.Split(s, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
		return out
	}
	for _, f := range strings.Fields(v) {
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			return in, fmt.Errorf("%q: want key=value", f)
		}
		switch k {
		case "name":
			in.Name = val
		case "kind":
			in.Kind = str(val)
		case "url":
			in.URL = str(val)
		case "client-id":
			in.ClientID = str(val)
		case "display-name":
			in.DisplayName = str(strings.ReplaceAll(val, "+", " "))
		case "scopes":
			in.Scopes, in.ScopesSet = list(val), true
		case "allowed-orgs":
			in.AllowedOrgs, in.AllowedOrgsSet = list(val), true
		case "allowed-domains":
			in.AllowedDomains, in.AllowedDomainsSet = list(val), true
		case "sign-in", "connect":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return in, fmt.Errorf("%s=%s: want true or false", k, val)
			}
			if k == "sign-in" {
				in.SignIn = &b
			} else {
				in.Connect = &b
			}
		case "client-secret":
			return in, fmt.Errorf("client-secret: give it in the environment (RUNNEL_SSO_<NAME>_CLIENT_SECRET), never on the command line")
		default:
			return in, fmt.Errorf("unknown field %q; accepted: name, kind, url, client-id, display-name (+ for spaces), scopes, allowed-orgs, allowed-domains, sign-in, connect", k)
		}
	}
	if in.Name == "" {
		return in, fmt.Errorf("name=…: required")
	}
	return in, nil
}

// SecretEnv is the environment variable a flag-configured provider's
// client secret is read from: RUNNEL_SSO_<NAME>_CLIENT_SECRET, the name in
// capitals with "-" as "_".
func SecretEnv(name string) string {
	return "RUNNEL_SSO_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_CLIENT_SECRET"
}

// GetProvider returns a provider's configuration (site admins).
func (s *Service) GetProvider(ctx context.Context, name string) (*store.AuthProvider, error) {
	if err := requireAdmin(ctx, "reading a provider's configuration"); err != nil {
		return nil, err
	}
	p, err := s.o.Store.GetAuthProvider(ctx, name)
	return p, runnel.About(err, "get", "provider", name)
}

// ListProviders lists the providers: anyone may list them (the sign-in
// page offers them); what is shown of each is the caller's business.
func (s *Service) ListProviders(ctx context.Context) ([]*store.AuthProvider, error) {
	list, err := s.o.Store.ListAuthProviders(ctx)
	if err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	return list, nil
}

// DeleteProvider removes a provider, the identities it linked and the
// sessions it opened (site admins). The users stay.
func (s *Service) DeleteProvider(ctx context.Context, name string) error {
	if err := requireAdmin(ctx, "removing a sign-in provider"); err != nil {
		return err
	}
	return runnel.About(s.o.Store.DeleteAuthProvider(ctx, name), "delete", "provider", name)
}

// CheckReturnTo accepts a path of the UI to land on after signing in: a
// local absolute path only (never another site: no open redirect).
func CheckReturnTo(v string) string {
	if v == "" || len(v) > 512 || !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.HasPrefix(v, "/\\") ||
		strings.ContainsAny(v, "\r\n\t\\") {
		return "/"
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(u.Path, "/api/") {
		return "/"
	}
	return v
}

// Begin starts a sign-in with provider name: the URL to send the browser
// to. redirectURL is this server's callback for the provider; returnTo the
// UI path to land on afterwards.
func (s *Service) Begin(ctx context.Context, name, redirectURL, returnTo string) (string, error) {
	p, err := s.o.Store.GetAuthProvider(ctx, name)
	if err != nil {
		return "", runnel.About(err, "get", "provider", name)
	}
	if !p.SignIn {
		return "", runnel.Errorf(runnel.ErrNotFound, "provider %s does not sign users in (it connects forge accounts only)", name)
	}
	sp, err := s.toSSO(p)
	if err != nil {
		return "", err
	}
	authURL, pending, err := s.o.SSO.Begin(ctx, sp, redirectURL)
	if err != nil {
		return "", err
	}
	l := &store.LoginState{State: pending.State, Provider: name, Nonce: pending.Nonce, Verifier: pending.Verifier,
		ReturnTo: CheckReturnTo(returnTo), ExpiresAt: s.now().Add(LoginTTL)}
	if err := s.o.Store.PutLoginState(ctx, l); err != nil {
		return "", err
	}
	return authURL, nil
}

// Meta is where a session comes from, for the user's list of sessions.
type Meta struct {
	UserAgent  string
	RemoteAddr string
}

// Finished is a completed sign-in: the session cookie's value (only this
// answer holds it), the session, the user, and where to land.
type Finished struct {
	Cookie   string
	Session  *store.Session
	User     *store.User
	ReturnTo string
	// Created is true when this sign-in provisioned the user.
	Created bool
	// Connected is set (and Cookie, Session and User are not) when the
	// flow connected a forge account: the credential it made or renewed.
	Connected *store.Credential
}

// Finish completes a sign-in from the provider's callback query: the state
// must be one this server issued, unused and unexpired; the code is
// exchanged (with the PKCE verifier); the identity is admitted by the
// provider's rules; the user it is linked to (or, the first time, a new
// user) gets a session.
func (s *Service) Finish(ctx context.Context, name string, q url.Values, redirectURL string, m Meta) (*Finished, error) {
	if err := sso.CallbackError(name, q); err != nil {
		return nil, err
	}
	state := q.Get("state")
	if state == "" || q.Get("code") == "" {
		return nil, runnel.Errorf(runnel.ErrUnauthenticated, "the provider's answer carries no code or state: start the sign-in again")
	}
	l, err := s.o.Store.TakeLoginState(ctx, state, s.now())
	if errors.Is(err, runnel.ErrNotFound) {
		return nil, runnel.Errorf(runnel.ErrUnauthenticated, "this sign-in is unknown, already used or older than %s: start it again", LoginTTL)
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(l.Provider), []byte(name)) != 1 {
		return nil, runnel.Errorf(runnel.ErrUnauthenticated, "this sign-in was started with provider %s, not %s: start it again", l.Provider, name)
	}
	if l.UserID != "" {
		return s.finishConnect(ctx, l, q, redirectURL)
	}
	p, err := s.o.Store.GetAuthProvider(ctx, name)
	if err != nil {
		return nil, runnel.About(err, "get", "provider", name)
	}
	sp, err := s.toSSO(p)
	if err != nil {
		return nil, err
	}
	id, err := s.o.SSO.Finish(ctx, sp, sso.Pending{Provider: l.Provider, State: l.State, Nonce: l.Nonce, Verifier: l.Verifier},
		state, q.Get("code"), redirectURL)
	if err != nil {
		return nil, err
	}
	u, created, err := s.userOf(ctx, name, id)
	if err != nil {
		return nil, err
	}
	value, sess, err := s.NewSession(ctx, u, name, m, nil, time.Time{})
	if err != nil {
		return nil, err
	}
	return &Finished{Cookie: value, Session: sess, User: u, ReturnTo: l.ReturnTo, Created: created}, nil
}

// userOf finds the user an identity signs in as, or provisions one.
func (s *Service) userOf(ctx context.Context, provider string, id *sso.Identity) (*store.User, bool, error) {
	now := s.now()
	uid, err := s.o.Store.UserOfIdentity(ctx, provider, id.Subject)
	if err == nil {
		u, err := s.o.Store.GetUser(ctx, uid)
		if err != nil {
			return nil, false, runnel.About(err, "get", "user", uid)
		}
		if u.Disabled {
			return nil, false, runnel.Errorf(runnel.ErrForbidden, "user %s is disabled; an admin can enable them again", u.Login)
		}
		// The provider keeps what it knows current; Runnel's own edits to
		// empty fields are filled.
		if u.Name == "" {
			u.Name = id.Name
		}
		if u.Email == "" {
			u.Email = id.Email
		}
		if id.AvatarURL != "" {
			u.AvatarURL = id.AvatarURL
		}
		u.LastLoginAt = &now
		if err := s.o.Store.UpdateUser(ctx, u); err != nil {
			return nil, false, runnel.About(err, "update", "user", u.ID)
		}
		return u, false, nil
	}
	if !errors.Is(err, runnel.ErrNotFound) {
		return nil, false, err
	}
	base := id.Login
	if identity.CheckLogin("login", base) != nil {
		base = "user"
	}
	u := &store.User{ID: runnel.NewID("usr"), Name: id.Name, Email: id.Email, AvatarURL: id.AvatarURL, CreatedAt: now, LastLoginAt: &now}
	// A login taken by another user (a local one, or someone of another
	// provider) gets a suffix: logins are unique, identities are not
	// merged by name.
	for i := 1; ; i++ {
		u.Login = base
		if i > 1 {
			u.Login = fmt.Sprintf("%s-%d", strings.TrimRight(base[:min(len(base), 58)], "-"), i)
		}
		err := s.o.Store.CreateUser(ctx, u)
		if err == nil {
			break
		}
		if !errors.Is(err, runnel.ErrConflict) || i >= 50 {
			return nil, false, fmt.Errorf("provision a user for %s/%s: %w", provider, id.Subject, err)
		}
	}
	if err := s.o.Store.LinkIdentity(ctx, provider, id.Subject, u.ID, now); err != nil {
		// Two first sign-ins of the same identity at once: the other won.
		_ = s.o.Store.DeleteUser(ctx, u.ID)
		if errors.Is(err, runnel.ErrConflict) {
			return s.userOf(ctx, provider, id)
		}
		return nil, false, err
	}
	return u, true, nil
}

func randomValue() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewSession opens a session for user u (provider "" for one opened with
// an API token, whose scopes it keeps and whose expiry, if not zero, it
// does not outlive) and returns the cookie's value.
func (s *Service) NewSession(ctx context.Context, u *store.User, provider string, m Meta, scopes []string, notAfter time.Time) (string, *store.Session, error) {
	value := "rns_" + randomValue()
	sum := sha256.Sum256([]byte(value))
	now := s.now()
	ua := m.UserAgent
	if len(ua) > 300 {
		ua = ua[:300]
	}
	if check.Text("ua", ua, 300, false) != nil {
		ua = ""
	}
	exp := now.Add(s.o.SessionTTL)
	if !notAfter.IsZero() && notAfter.Before(exp) {
		exp = notAfter.UTC()
	}
	sess := &store.Session{ID: runnel.NewID("ses"), Hash: sum[:], UserID: u.ID, Provider: provider, CreatedAt: now,
		ExpiresAt: exp, LastSeenAt: now, UserAgent: ua, RemoteAddr: m.RemoteAddr, Scopes: scopes}
	if err := s.o.Store.CreateSession(ctx, sess); err != nil {
		return "", nil, err
	}
	return value, sess, nil
}

// touchEvery bounds the writes of a session's last use.
const touchEvery = time.Minute

// Principal is the caller a session cookie's value stands for: its user,
// with every scope of their role. An unknown, revoked or expired session,
// or a disabled user's, is ErrUnauthenticated.
func (s *Service) Principal(ctx context.Context, value string) (runnel.Principal, error) {
	if !strings.HasPrefix(value, "rns_") || len(value) > 100 {
		return runnel.Principal{}, runnel.Errorf(runnel.ErrUnauthenticated, "cookie %s: not a session; sign in again", CookieName)
	}
	sum := sha256.Sum256([]byte(value))
	sess, err := s.o.Store.SessionByHash(ctx, sum[:])
	if errors.Is(err, runnel.ErrNotFound) || (err == nil && subtle.ConstantTimeCompare(sess.Hash, sum[:]) != 1) {
		return runnel.Principal{}, runnel.Errorf(runnel.ErrUnauthenticated, "cookie %s: the session ended (signed out or revoked); sign in again", CookieName)
	}
	if err != nil {
		return runnel.Principal{}, err
	}
	now := s.now()
	if !now.Before(sess.ExpiresAt) {
		return runnel.Principal{}, runnel.Errorf(runnel.ErrUnauthenticated, "cookie %s: the session expired; sign in again", CookieName)
	}
	u, err := s.o.Store.GetUser(ctx, sess.UserID)
	if errors.Is(err, runnel.ErrNotFound) {
		return runnel.Principal{}, runnel.Errorf(runnel.ErrUnauthenticated, "the session's user no longer exists")
	}
	if err != nil {
		return runnel.Principal{}, err
	}
	if u.Disabled {
		return runnel.Principal{}, runnel.Errorf(runnel.ErrUnauthenticated, "user %s is disabled; an admin can enable them again", u.Login)
	}
	if now.Sub(sess.LastSeenAt) >= touchEvery {
		_ = s.o.Store.TouchSession(ctx, sess.ID, now)
	}
	p := runnel.Principal{TokenID: sess.ID, Subject: u.Login, Role: "user", UserID: u.ID, Scopes: sess.Scopes}
	if u.Admin {
		p.Role = "admin"
	}
	return p, nil
}

// ListSessions lists the caller's sessions.
func (s *Service) ListSessions(ctx context.Context, userID string) ([]*store.Session, error) {
	return s.o.Store.ListSessions(ctx, userID)
}

// EndSession ends a session: one's own, or any for a site admin (another
// user's is not found for the others).
func (s *Service) EndSession(ctx context.Context, id string) error {
	if c, ok := runnel.PrincipalFrom(ctx); ok && !c.SiteAdmin() {
		list, err := s.o.Store.ListSessions(ctx, c.UserID)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(list, func(x *store.Session) bool { return x.ID == id }) {
			return runnel.Errorf(runnel.ErrNotFound, "session %s not found", id)
		}
	}
	return runnel.About(s.o.Store.DeleteSession(ctx, id), "delete", "session", id)
}

// CLIGrantTTL is how long the command line has to exchange a grant.
const CLIGrantTTL = 5 * time.Minute

// GrantCLI records the caller's consent to the command line's sign-in on
// this machine (runnel login): the answer is the loopback URL the browser
// goes to, carrying a one-use code that is worthless without the verifier
// of challenge, which only the command line holds.
func (s *Service) GrantCLI(ctx context.Context, challenge string, port int) (string, error) {
	c, ok := runnel.PrincipalFrom(ctx)
	if !ok || c.UserID == "" {
		return "", runnel.Errorf(runnel.ErrForbidden, "the command line's sign-in needs a signed-in user")
	}
	if len(challenge) != 43 || strings.Trim(challenge, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		return "", runnel.Invalidf("body.challenge: must be the base64url SHA-256 of the command line's verifier (43 characters)")
	}
	if port < 1024 || port > 65535 {
		return "", runnel.Invalidf("body.port: %d is not the command line's loopback port (1024 to 65535)", port)
	}
	code := randomValue()
	sum := sha256.Sum256([]byte(code))
	g := &store.CLIGrant{CodeHash: sum[:], UserID: c.UserID, Challenge: challenge, Scopes: c.Scopes, ExpiresAt: s.now().Add(CLIGrantTTL)}
	if err := s.o.Store.PutCLIGrant(ctx, g); err != nil {
		return "", err
	}
	return fmt.Sprintf("http://127.0.0.1:%d/callback?code=%s", port, code), nil
}

// ExchangeCLI turns a grant's code and the verifier of its challenge into
// an API token of the granting user named name, with the scopes of the
// session that granted it. The code works once, within CLIGrantTTL.
func (s *Service) ExchangeCLI(ctx context.Context, code, verifier, name string) (*store.APIToken, string, error) {
	if s.o.Identity == nil {
		return nil, "", runnel.Errorf(runnel.ErrUnavailable, "this server does not sign the command line in")
	}
	if code == "" || verifier == "" || len(code) > 200 || len(verifier) > 200 {
		return nil, "", runnel.Invalidf("body: code and verifier are required")
	}
	sum := sha256.Sum256([]byte(code))
	g, err := s.o.Store.TakeCLIGrant(ctx, sum[:], s.now())
	if errors.Is(err, runnel.ErrNotFound) {
		return nil, "", runnel.Errorf(runnel.ErrUnauthenticated, "body.code: unknown, already used or older than %s: run runnel login again", CLIGrantTTL)
	}
	if err != nil {
		return nil, "", err
	}
	vs := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(vs[:])), []byte(g.Challenge)) != 1 {
		return nil, "", runnel.Errorf(runnel.ErrUnauthenticated, "body.verifier: does not match the challenge the sign-in began with")
	}
	u, err := s.o.Store.GetUser(ctx, g.UserID)
	if err != nil {
		return nil, "", runnel.About(err, "get", "user", g.UserID)
	}
	if u.Disabled {
		return nil, "", runnel.Errorf(runnel.ErrForbidden, "user %s is disabled", u.Login)
	}
	caller := runnel.Principal{Subject: u.Login, Role: "user", UserID: u.ID, Scopes: g.Scopes}
	if u.Admin {
		caller.Role = "admin"
	}
	if name == "" {
		name = "command line"
	}
	return s.o.Identity.CreateToken(runnel.WithPrincipal(ctx, caller), caller, u.ID, identity.TokenRequest{Name: name, Scopes: g.Scopes})
}

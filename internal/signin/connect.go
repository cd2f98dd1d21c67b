package signin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/sso"
	"github.com/runnel-ci/runnel/internal/store"
)

// Connected accounts (seed 001's source-code credentials): a user authorises
// a forge application (a provider with Connect on) and Runnel keeps the
// tokens as a personal credential: the access token sealed as the
// credential's secret, the refresh token sealed beside it, renewed before
// the access token expires. Hand-made credentials are untouched by this.

// BeginConnect starts connecting the caller's account at provider name:
// the URL to send the browser to. The flow comes back to the provider's
// callback (the one sign-in uses), which finishes it for this user.
func (s *Service) BeginConnect(ctx context.Context, name, redirectURL, returnTo string) (string, error) {
	c, ok := runnel.PrincipalFrom(ctx)
	if !ok || c.UserID == "" {
		return "", runnel.Errorf(runnel.ErrForbidden, "connecting a forge account needs a signed-in user (a token of no user cannot own one)")
	}
	p, err := s.o.Store.GetAuthProvider(ctx, name)
	if err != nil {
		return "", runnel.About(err, "get", "provider", name)
	}
	if !p.Connect {
		return "", runnel.Errorf(runnel.ErrNotFound, "provider %s does not connect forge accounts (an admin turns connect on for it)", name)
	}
	sp, err := s.toSSO(p)
	if err != nil {
		return "", err
	}
	authURL, pending, err := s.o.SSO.BeginConnect(ctx, sp, redirectURL)
	if err != nil {
		return "", err
	}
	l := &store.LoginState{State: pending.State, Provider: name, Nonce: pending.Nonce, Verifier: pending.Verifier,
		ReturnTo: CheckReturnTo(returnTo), ExpiresAt: s.now().Add(LoginTTL), UserID: c.UserID}
	if err := s.o.Store.PutLoginState(ctx, l); err != nil {
		return "", err
	}
	return authURL, nil
}

// finishConnect completes a connection begun by BeginConnect: the account's
// credential is created, or renewed when the user had connected the same
// account before.
func (s *Service) finishConnect(ctx context.Context, l *store.LoginState, q url.Values, redirectURL string) (*Finished, error) {
	u, err := s.o.Store.GetUser(ctx, l.UserID)
	if err != nil {
		return nil, runnel.Errorf(runnel.ErrUnauthenticated, "the user who started connecting this account no longer exists")
	}
	if u.Disabled {
		return nil, runnel.Errorf(runnel.ErrForbidden, "user %s is disabled", u.Login)
	}
	p, err := s.o.Store.GetAuthProvider(ctx, l.Provider)
	if err != nil {
		return nil, runnel.About(err, "get", "provider", l.Provider)
	}
	sp, err := s.toSSO(p)
	if err != nil {
		return nil, err
	}
	id, tok, err := s.o.SSO.FinishConnect(ctx, sp, sso.Pending{Provider: l.Provider, State: l.State, Nonce: l.Nonce, Verifier: l.Verifier},
		q.Get("state"), q.Get("code"), redirectURL)
	if err != nil {
		return nil, err
	}
	if len(tok.AccessToken) < 8 {
		return nil, runnel.Errorf(runnel.ErrUpstream, "provider %s returned an access token too short to be masked in logs", p.Name)
	}
	cred, err := s.saveConnection(ctx, u, p, id, tok)
	if err != nil {
		return nil, err
	}
	return &Finished{ReturnTo: l.ReturnTo, Connected: cred}, nil
}

// saveConnection stores the account's credential: the one this user
// already has for the same provider and account is renewed.
func (s *Service) saveConnection(ctx context.Context, u *store.User, p *store.AuthProvider, id *sso.Identity, tok *oauth2.Token) (*store.Credential, error) {
	now := s.now()
	list, err := s.o.Store.ListCredentials(ctx, "")
	if err != nil {
		return nil, err
	}
	var cur *store.Credential
	created := false
	names := map[string]bool{}
	for _, c := range list {
		names[c.Name] = true
		if c.OwnerID == u.ID && c.Provider == p.Name && c.AccountID == id.Subject {
			cur = c
		}
	}
	host := kindHost(p)
	if host == "" {
		host = map[string]string{"github": "github.com", "gitlab": "gitlab.com", "bitbucket": "bitbucket.org"}[p.Kind]
	}
	if cur == nil {
		base := p.Name + "-" + id.Login
		name := base
		for i := 2; names[name]; i++ {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		created = true
		cur = &store.Credential{ID: runnel.NewID("cred"), Name: name, Kind: p.Kind, Host: host, Username: id.Login,
			CreatedBy: u.Login, CreatorID: u.ID, CreatedAt: now, OwnerID: u.ID, Provider: p.Name, AccountID: id.Subject}
	}
	cur.LoginName, cur.AvatarURL, cur.Username, cur.UpdatedAt = id.Login, id.AvatarURL, id.Login, now
	if cur.Kind == string(sso.KindGitLab) || cur.Kind == string(sso.KindBitbucket) {
		// Git over HTTPS takes an OAuth token with these user names.
		cur.Username = map[string]string{"gitlab": "oauth2", "bitbucket": "x-token-auth"}[cur.Kind]
	}
	s.sealTokens(cur, tok)
	if created {
		err = s.o.Store.CreateCredential(ctx, cur)
	} else {
		err = s.o.Store.UpdateCredential(ctx, cur)
	}
	if err != nil {
		return nil, fmt.Errorf("store the connected account: %w", err)
	}
	return cur, nil
}

// sealTokens seals tok's access and refresh tokens into c.
func (s *Service) sealTokens(c *store.Credential, tok *oauth2.Token) {
	c.Ciphertext, c.KeyID = s.o.Keys.Seal(c.ID, []byte(tok.AccessToken))
	if tok.RefreshToken != "" {
		c.RefreshCiphertext, c.RefreshKeyID = s.o.Keys.Seal(c.RefreshSealID(), []byte(tok.RefreshToken))
	}
	c.ExpiresAt = nil
	if !tok.Expiry.IsZero() {
		t := tok.Expiry.UTC()
		c.ExpiresAt = &t
	}
}

// RefreshMargin is how long before its expiry an access token is renewed.
const RefreshMargin = 5 * time.Minute

// refreshMu serialises refreshes in this process: two callers needing the
// same account's token at once refresh it once. Across replicas, a refresh
// refused because another replica spent the refresh token first finds that
// replica's tokens stored and uses them.
var refreshMu sync.Mutex

// AccessToken opens a credential's access token for the server's own calls
// to its forge: a connected account's token about to expire is refreshed
// first (and stored). Another replica refreshing at the same moment is
// recognised by the credential having changed since it was read.
func (s *Service) AccessToken(ctx context.Context, c *store.Credential) (string, error) {
	if s.o.Keys == nil {
		return "", runnel.Errorf(runnel.ErrUnavailable, "the server has no key to open credential %s", c.ID)
	}
	if c.ExpiresAt != nil && len(c.RefreshCiphertext) > 0 && s.now().Add(RefreshMargin).After(*c.ExpiresAt) {
		refreshMu.Lock()
		defer refreshMu.Unlock()
		fresh, err := s.o.Store.GetCredential(ctx, c.ID)
		if err != nil {
			return "", err
		}
		c = fresh
		if c.ExpiresAt != nil && s.now().Add(RefreshMargin).After(*c.ExpiresAt) {
			if err := s.refresh(ctx, c); err != nil {
				// Another replica may have refreshed it with the same
				// refresh token a moment ago (forges that rotate refresh
				// tokens refuse the second use): its tokens are stored.
				again, gerr := s.o.Store.GetCredential(ctx, c.ID)
				if gerr != nil || !again.UpdatedAt.After(c.UpdatedAt) || bytes.Equal(again.Ciphertext, c.Ciphertext) {
					return "", err
				}
				c = again
			}
		}
	}
	v, err := s.o.Keys.Open(c.ID, c.Ciphertext, c.KeyID)
	if err != nil {
		return "", err
	}
	return string(v), nil
}

func (s *Service) refresh(ctx context.Context, c *store.Credential) error {
	p, err := s.o.Store.GetAuthProvider(ctx, c.Provider)
	if errors.Is(err, runnel.ErrNotFound) {
		return runnel.Errorf(runnel.ErrUnavailable, "credential %s: its access token expired and provider %s, which connected it, is gone: connect the account again", c.Name, c.Provider)
	}
	if err != nil {
		return err
	}
	sp, err := s.toSSO(p)
	if err != nil {
		return err
	}
	rt, err := s.o.Keys.Open(c.RefreshSealID(), c.RefreshCiphertext, c.RefreshKeyID)
	if err != nil {
		return err
	}
	tok, err := s.o.SSO.Refresh(ctx, sp, string(rt))
	if err != nil {
		return fmt.Errorf("credential %s: %w", c.Name, err)
	}
	s.sealTokens(c, tok)
	c.UpdatedAt = s.now()
	return s.o.Store.UpdateCredential(ctx, c)
}

// ConnectProviders lists the providers that connect accounts.
func (s *Service) ConnectProviders(ctx context.Context) ([]*store.AuthProvider, error) {
	list, err := s.ListProviders(ctx)
	if err != nil {
		return nil, err
	}
	out := list[:0]
	for _, p := range list {
		if p.Connect {
			out = append(out, p)
		}
	}
	return out, nil
}

// Provider is the protocol's view of a provider, its client secret opened
// (for the server's own calls: revoking a token).
func (s *Service) Provider(ctx context.Context, name string) (sso.Provider, error) {
	p, err := s.o.Store.GetAuthProvider(ctx, name)
	if err != nil {
		return sso.Provider{}, runnel.About(err, "get", "provider", name)
	}
	return s.toSSO(p)
}

// kindHost is the host part of a provider's web URL ("" for the public
// services' defaults).
func kindHost(p *store.AuthProvider) string {
	if u, err := url.Parse(strings.TrimSpace(p.URL)); err == nil {
		return u.Host
	}
	return ""
}

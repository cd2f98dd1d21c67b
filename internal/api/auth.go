package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/identity"
	"github.com/runnel-ci/runnel/internal/imageapi"
	"github.com/runnel-ci/runnel/internal/signin"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

// touchEvery bounds last-used writes per token.
const touchEvery = time.Minute

// unauthorized builds a 401 with the WWW-Authenticate challenge RFC 6750 asks
// for.
func unauthorized(msg string) *apikit.Error {
	return &apikit.Error{
		Status: http.StatusUnauthorized,
		Msg:    msg,
		Header: http.Header{"Www-Authenticate": {`Bearer realm="runnel"`}},
	}
}

// authenticate checks the bearer token. Only the SHA-256 of a token is
// stored, so the lookup is by hash; the stored hash is still compared in
// constant time, so that a store matching loosely (a prefix index, a
// case-folding collation) can never let a different token through.
func (s *Server) authenticate(r *http.Request) (apikit.Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if c, err := r.Cookie(signin.CookieName); err == nil && c.Value != "" {
			return s.sessionPrincipal(r, c.Value)
		}
		return apikit.Principal{}, unauthorized("header Authorization: missing; send Authorization: Bearer <token>")
	}
	scheme, token, ok := strings.Cut(h, " ")
	// The seed's API clients send "Token <token>"; it is the same token.
	if !ok || !(strings.EqualFold(scheme, "Bearer") || (imageapi.SeedPath(r.URL.Path) && strings.EqualFold(scheme, "Token"))) {
		if imageapi.SeedPath(r.URL.Path) {
			return apikit.Principal{}, unauthorized("header Authorization: must be \"Token <token>\" or \"Bearer <token>\"")
		}
		return apikit.Principal{}, unauthorized("header Authorization: must be \"Bearer <token>\"")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return apikit.Principal{}, unauthorized("header Authorization: the bearer token is empty")
	}
	sum := sha256.Sum256([]byte(token))
	t, err := s.st.TokenByHash(r.Context(), sum[:])
	if errors.Is(err, runnel.ErrNotFound) {
		return apikit.Principal{}, unauthorized("header Authorization: unknown or revoked token")
	}
	if err != nil {
		// A database outage is not the client's fault: a 500, not a 401.
		return apikit.Principal{}, err
	}
	if subtle.ConstantTimeCompare(t.Hash, sum[:]) != 1 {
		return apikit.Principal{}, unauthorized("header Authorization: unknown or revoked token")
	}
	now := s.now()
	if t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) {
		return apikit.Principal{}, unauthorized("header Authorization: the token expired at " + wire.Time(*t.ExpiresAt) + "; create a new one")
	}
	switch t.Role {
	case "admin", "user":
	case "agent":
		return apikit.Principal{}, apikit.Errorf(http.StatusForbidden, "header Authorization: agent tokens (%s) cannot call the user API; use a user token", t.Name)
	default:
		return apikit.Principal{}, apikit.Errorf(http.StatusForbidden, "header Authorization: token role %q is not allowed to call the user API", t.Role)
	}
	p, err := identity.PrincipalOf(r.Context(), s.st, t)
	if errors.Is(err, runnel.ErrUnauthenticated) {
		return apikit.Principal{}, unauthorized("header Authorization: " + err.Error())
	}
	if err != nil {
		return apikit.Principal{}, err
	}
	s.touch(r.Context(), t, now)
	return p, nil
}

// sessionPrincipal authenticates a browser session's cookie. A change sent
// with the cookie must come from the UI's own origin: browsers send Origin
// (or Sec-Fetch-Site) with every such request, and another site's page
// cannot forge them, so a request that another site made the browser send
// is refused (SameSite=Lax already keeps the cookie off most of them).
func (s *Server) sessionPrincipal(r *http.Request, value string) (apikit.Principal, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameOrigin(r, s.externalURL) {
		return apikit.Principal{}, apikit.Errorf(http.StatusForbidden,
			"header Origin: a change sent with the session cookie must come from this server's own pages; scripts and other tools send Authorization: Bearer <token>")
	}
	p, err := s.signin.Principal(r.Context(), value)
	if errors.Is(err, runnel.ErrUnauthenticated) {
		return apikit.Principal{}, unauthorized(err.Error())
	}
	return p, err
}

// sameOrigin reports whether a browser says the request comes from the
// server's own origin.
func sameOrigin(r *http.Request, external string) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true
	case "cross-site", "same-site":
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return false
	}
	return strings.EqualFold(o, apikit.ExternalBase(r, external)) || strings.EqualFold(strings.TrimPrefix(strings.TrimPrefix(o, "https://"), "http://"), r.Host)
}

// touch records the token's use at most once per touchEvery. The stored
// LastUsedAt counts too, so a restart does not cause a burst of writes. A
// failed write is logged, never fatal: last-used is informational.
func (s *Server) touch(ctx context.Context, t *store.APIToken, now time.Time) {
	if t.LastUsedAt != nil && now.Sub(*t.LastUsedAt) < touchEvery {
		return
	}
	s.touchMu.Lock()
	last, ok := s.touched[t.ID]
	due := !ok || now.Sub(last) >= touchEvery
	if due {
		s.touched[t.ID] = now
	}
	s.touchMu.Unlock()
	if !due {
		return
	}
	if err := s.st.TouchToken(ctx, t.ID, now); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "cannot record token use",
			slog.String("token_id", t.ID), slog.Any("error", err))
	}
}

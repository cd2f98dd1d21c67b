// Package identity owns the rules of users and their API tokens: who may
// create, change and remove users (site admins), which scopes a token may
// carry (never more than its creator's token, admin only for admins), the
// token values (shown once, stored as SHA-256), and the guard that keeps a
// server from losing its last enabled admin.
package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/store"
)

// Store is what the identity service reads and writes.
type Store interface {
	store.Users
	CreateToken(ctx context.Context, t *store.APIToken) error
	GetToken(ctx context.Context, id string) (*store.APIToken, error)
	TokensOfUser(ctx context.Context, userID string) ([]*store.APIToken, error)
	DeleteToken(ctx context.Context, id string) error
}

// Options configure a Service. Store is required.
type Options struct {
	Store Store
	Clock func() time.Time
}

// Service is the users and tokens service.
type Service struct{ o Options }

// New returns a service for o.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Service{o: o}
}

// Caller is who asks: the principal of the request.
type Caller = runnel.Principal

var loginPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`) })

// UserFields are a user's fields as an admin sets them; on an update only
// the fields given (non-nil) change.
type UserFields struct {
	Name      *string
	Email     *string
	AvatarURL *string
	Admin     *bool
	Disabled  *bool
}

func (f UserFields) check() error {
	if f.Name != nil {
		if err := check.Text("body.name", *f.Name, 200, false); err != nil {
			return err
		}
	}
	if f.Email != nil && *f.Email != "" {
		if a, err := mail.ParseAddress(*f.Email); err != nil || a.Address != *f.Email || len(*f.Email) > 254 {
			return runnel.Invalidf("body.email: %q is not an email address such as alice@example.com", *f.Email)
		}
	}
	if f.AvatarURL != nil && *f.AvatarURL != "" {
		u, err := url.Parse(*f.AvatarURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(*f.AvatarURL) > 2048 {
			return runnel.Invalidf("body.avatarUrl: must be an http(s) URL, got %q", *f.AvatarURL)
		}
	}
	return nil
}

func (f UserFields) apply(u *store.User) {
	if f.Name != nil {
		u.Name = *f.Name
	}
	if f.Email != nil {
		u.Email = *f.Email
	}
	if f.AvatarURL != nil {
		u.AvatarURL = *f.AvatarURL
	}
	if f.Admin != nil {
		u.Admin = *f.Admin
	}
	if f.Disabled != nil {
		u.Disabled = *f.Disabled
	}
}

// CheckLogin validates a login: 1 to 63 letters, digits, ".", "_" or "-",
// starting with a letter or digit (it names the user in approvers and in
// createdBy fields).
func CheckLogin(field, login string) error {
	if !loginPattern().MatchString(login) {
		return runnel.Invalidf("%s: %q is not a login: 1 to 63 letters, digits, \".\", \"_\" or \"-\", starting with a letter or digit", field, login)
	}
	return nil
}

// CreateUser creates a local user (admin only).
func (s *Service) CreateUser(ctx context.Context, c Caller, login string, f UserFields) (*store.User, error) {
	if err := requireAdmin(c, "creating a user"); err != nil {
		return nil, err
	}
	if err := CheckLogin("body.login", login); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	if f.Disabled != nil && *f.Disabled {
		return nil, runnel.Invalidf("body.disabled: a new user cannot be disabled")
	}
	u := &store.User{ID: runnel.NewID("usr"), Login: login, CreatedAt: s.o.Clock().UTC()}
	f.apply(u)
	if err := s.o.Store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, runnel.ErrConflict) {
			return nil, runnel.Errorf(runnel.ErrConflict, "body.login: a user %s exists", login)
		}
		return nil, fmt.Errorf("create user %s: %w", login, err)
	}
	return u, nil
}

// GetUser returns a user: any to an admin, only themselves to others (a
// user they may not see is not found).
func (s *Service) GetUser(ctx context.Context, c Caller, id string) (*store.User, error) {
	if !c.Admin() && c.UserID != id {
		return nil, runnel.Errorf(runnel.ErrNotFound, "user %s not found", id)
	}
	u, err := s.o.Store.GetUser(ctx, id)
	return u, runnel.About(err, "get", "user", id)
}

// ListUsers lists the users (admin only).
func (s *Service) ListUsers(ctx context.Context, c Caller) ([]*store.User, error) {
	if err := requireAdmin(c, "listing users"); err != nil {
		return nil, err
	}
	list, err := s.o.Store.ListUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return list, nil
}

// UpdateUser changes a user's fields (admin only). The last enabled admin
// cannot be demoted or disabled.
func (s *Service) UpdateUser(ctx context.Context, c Caller, id string, f UserFields) (*store.User, error) {
	if err := requireAdmin(c, "changing a user"); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	u, err := s.o.Store.GetUser(ctx, id)
	if err != nil {
		return nil, runnel.About(err, "get", "user", id)
	}
	wasAdmin := u.Admin && !u.Disabled
	f.apply(u)
	if wasAdmin && (!u.Admin || u.Disabled) {
		if err := s.keepAnAdmin(ctx, u.ID, "demote or disable"); err != nil {
			return nil, err
		}
	}
	if err := s.o.Store.UpdateUser(ctx, u); err != nil {
		return nil, runnel.About(err, "update", "user", id)
	}
	return u, nil
}

// DeleteUser removes a user and their tokens (admin only; not the last
// enabled admin).
func (s *Service) DeleteUser(ctx context.Context, c Caller, id string) error {
	if err := requireAdmin(c, "deleting a user"); err != nil {
		return err
	}
	u, err := s.o.Store.GetUser(ctx, id)
	if err != nil {
		return runnel.About(err, "get", "user", id)
	}
	if u.Admin && !u.Disabled {
		if err := s.keepAnAdmin(ctx, u.ID, "delete"); err != nil {
			return err
		}
	}
	return runnel.About(s.o.Store.DeleteUser(ctx, id), "delete", "user", id)
}

// keepAnAdmin refuses to act on user id when no other enabled admin exists.
func (s *Service) keepAnAdmin(ctx context.Context, id, what string) error {
	users, err := s.o.Store.ListUsers(ctx)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	for _, u := range users {
		if u.ID != id && u.Admin && !u.Disabled {
			return nil
		}
	}
	return runnel.Errorf(runnel.ErrConflict, "user %s is the last enabled admin: make another user admin before you %s it", id, what)
}

// TokenRequest is an API token to create.
type TokenRequest struct {
	Name string
	// Scopes default to every scope the user may have (admin for admins).
	Scopes []string
	// ExpiresAt is an RFC 3339 time ("": never).
	ExpiresAt string
}

// CreateToken creates a token for user userID and returns it with its value,
// which only this answer holds. A user creates their own, with no scope
// their calling token lacks; an admin creates any user's.
func (s *Service) CreateToken(ctx context.Context, c Caller, userID string, r TokenRequest) (*store.APIToken, string, error) {
	if userID != c.UserID || c.UserID == "" {
		if err := requireAdmin(c, "creating another user's token"); err != nil {
			return nil, "", err
		}
	}
	u, err := s.o.Store.GetUser(ctx, userID)
	if err != nil {
		return nil, "", runnel.About(err, "get", "user", userID)
	}
	if u.Disabled {
		return nil, "", runnel.Errorf(runnel.ErrConflict, "user %s is disabled: enable them before creating a token", u.Login)
	}
	if err := check.Text("body.name", r.Name, 200, false); err != nil {
		return nil, "", err
	}
	if strings.TrimSpace(r.Name) == "" {
		return nil, "", runnel.Invalidf("body.name: required: say what the token is for")
	}
	scopes := r.Scopes
	if scopes == nil {
		scopes = []string{runnel.ScopeRead, runnel.ScopeRun, runnel.ScopeWrite}
		if u.Admin {
			scopes = append(scopes, runnel.ScopeAdmin)
		}
	}
	if len(scopes) == 0 {
		return nil, "", runnel.Invalidf("body.scopes: give at least one of %s", strings.Join(runnel.Scopes, ", "))
	}
	seen := map[string]bool{}
	for i, sc := range scopes {
		if err := check.Enum(fmt.Sprintf("body.scopes[%d]", i), sc, runnel.Scopes...); err != nil {
			return nil, "", err
		}
		if seen[sc] {
			return nil, "", runnel.Invalidf("body.scopes[%d]: %s given twice", i, sc)
		}
		seen[sc] = true
		if sc == runnel.ScopeAdmin && !u.Admin {
			return nil, "", runnel.Invalidf("body.scopes[%d]: admin is only for admins, and %s is not one", i, u.Login)
		}
		if userID == c.UserID && !runnel.Allows(c.Scopes, sc) {
			return nil, "", runnel.Errorf(runnel.ErrForbidden, "body.scopes[%d]: the token you call with does not have %s; a token cannot create one with more rights", i, sc)
		}
	}
	now := s.o.Clock().UTC()
	var exp *time.Time
	if r.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, r.ExpiresAt)
		if err != nil {
			return nil, "", runnel.Invalidf("body.expiresAt: %q is not an RFC 3339 time such as 2026-12-31T23:59:59Z", r.ExpiresAt)
		}
		if !t.After(now) {
			return nil, "", runnel.Invalidf("body.expiresAt: %s is not in the future", r.ExpiresAt)
		}
		t = t.UTC()
		exp = &t
	}
	role := "user"
	if u.Admin {
		role = "admin"
	}
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	value := "rnl_" + hex.EncodeToString(raw)
	sum := sha256.Sum256([]byte(value))
	t := &store.APIToken{ID: runnel.NewID("tok"), Name: r.Name, Subject: u.Login, Role: role, UserID: u.ID,
		Scopes: slices.Clone(scopes), Hash: sum[:], CreatedAt: now, ExpiresAt: exp}
	if err := s.o.Store.CreateToken(ctx, t); err != nil {
		return nil, "", fmt.Errorf("create token: %w", err)
	}
	return t, value, nil
}

// ListTokens lists a user's tokens (their own, or any user's for an admin).
func (s *Service) ListTokens(ctx context.Context, c Caller, userID string) ([]*store.APIToken, error) {
	if userID != c.UserID && !c.Admin() {
		return nil, runnel.Errorf(runnel.ErrNotFound, "user %s not found", userID)
	}
	list, err := s.o.Store.TokensOfUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("list tokens of %s: %w", userID, err)
	}
	return list, nil
}

// DeleteToken revokes a token: one's own, or any for an admin (another
// user's token is not found for the others).
func (s *Service) DeleteToken(ctx context.Context, c Caller, id string) error {
	t, err := s.o.Store.GetToken(ctx, id)
	if err == nil && t.Role == "agent" {
		err = runnel.ErrNotFound // agents' tokens go with their agents
	}
	if err == nil && t.UserID != c.UserID && !c.Admin() {
		err = runnel.ErrNotFound
	}
	if err != nil {
		return runnel.About(err, "get", "token", id)
	}
	return runnel.About(s.o.Store.DeleteToken(ctx, id), "delete", "token", id)
}

func requireAdmin(c Caller, what string) error {
	if !c.Admin() {
		return runnel.Errorf(runnel.ErrForbidden, "%s needs a site admin's token with the admin scope", what)
	}
	return nil
}

// UserGetter finds users by id.
type UserGetter interface {
	GetUser(ctx context.Context, id string) (*store.User, error)
}

// PrincipalOf is the principal of a found, unexpired user token t: its
// user's login and admin flag (a token not linked to a user keeps its own
// subject and role), and its scopes. A disabled or deleted user's tokens no
// longer authenticate (ErrUnauthenticated).
func PrincipalOf(ctx context.Context, users UserGetter, t *store.APIToken) (runnel.Principal, error) {
	p := runnel.Principal{TokenID: t.ID, Subject: t.Subject, Role: t.Role, Scopes: t.Scopes}
	if t.UserID == "" {
		return p, nil
	}
	u, err := users.GetUser(ctx, t.UserID)
	if errors.Is(err, runnel.ErrNotFound) {
		return runnel.Principal{}, runnel.Errorf(runnel.ErrUnauthenticated, "the token's user no longer exists")
	}
	if err != nil {
		return runnel.Principal{}, fmt.Errorf("get the token's user %s: %w", t.UserID, err)
	}
	if u.Disabled {
		return runnel.Principal{}, runnel.Errorf(runnel.ErrUnauthenticated, "user %s is disabled; an admin can enable them again", u.Login)
	}
	p.UserID, p.Subject, p.Role = u.ID, u.Login, "user"
	if u.Admin {
		p.Role = "admin"
	}
	return p, nil
}

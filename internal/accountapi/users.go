package accountapi

import (
	"net/http"

	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/identity"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

var (
	userIDKind  = apikit.IDKind{Param: "userId", Prefix: "usr_", Noun: "user"}
	tokenIDKind = apikit.IDKind{Param: "tokenId", Prefix: "tok_", Noun: "token"}
)

// userJSON is a user as the API shows it.
type userJSON struct {
	UserID      string  `json:"userId"`
	Login       string  `json:"login"`
	Name        string  `json:"name"`
	Email       string  `json:"email"`
	AvatarURL   string  `json:"avatarUrl"`
	Admin       bool    `json:"admin"`
	Disabled    bool    `json:"disabled"`
	CreatedAt   string  `json:"createdAt"`
	LastLoginAt *string `json:"lastLoginAt"`
}

func toUserJSON(u *store.User) userJSON {
	return userJSON{UserID: u.ID, Login: u.Login, Name: u.Name, Email: u.Email, AvatarURL: u.AvatarURL, Admin: u.Admin,
		Disabled: u.Disabled, CreatedAt: wire.Time(u.CreatedAt), LastLoginAt: wire.TimePtr(u.LastLoginAt)}
}

// userBody is POST /api/v1/users.
type userBody struct {
	Login string `json:"login"`
	userUpdateBody
}

// userUpdateBody is PUT /api/v1/users/{userId}: the fields present change
// (the login cannot).
type userUpdateBody struct {
	Name      *string `json:"name"`
	Email     *string `json:"email"`
	AvatarURL *string `json:"avatarUrl"`
	Admin     *bool   `json:"admin"`
	Disabled  *bool   `json:"disabled"`
}

func (b *userUpdateBody) fields() identity.UserFields {
	return identity.UserFields{Name: b.Name, Email: b.Email, AvatarURL: b.AvatarURL, Admin: b.Admin, Disabled: b.Disabled}
}

// nulls refuses null for the fields present: null is not a value of any.
func nulls(present map[string]bool, b *userUpdateBody) error {
	for name, v := range map[string]bool{"name": b.Name == nil, "email": b.Email == nil, "avatarUrl": b.AvatarURL == nil,
		"admin": b.Admin == nil, "disabled": b.Disabled == nil} {
		if present[name] && v {
			return apikit.Errorf(http.StatusBadRequest, "body.%s: must not be null", name)
		}
	}
	return nil
}

var userUpdateRejected = map[string]string{
	"login":  "cannot change: create another user instead",
	"userId": "is the path's user id and cannot change",
}

// readUserBody decodes a user body (userBody or userUpdateBody) and refuses
// nulls.
func (a *API) readUserBody(r *http.Request, dst any, u *userUpdateBody, rejected map[string]string) error {
	data, err := apikit.ReadBody(r, a.MaxBody)
	if err != nil {
		return err
	}
	present, err := apikit.Decode(data, dst, apikit.DecodeOptions{Rejected: rejected})
	if err != nil {
		return err
	}
	return nulls(present, u)
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) error {
	var b userBody
	if err := a.readUserBody(r, &b, &b.userUpdateBody, nil); err != nil {
		return err
	}
	u, err := a.Identity.CreateUser(r.Context(), apikit.PrincipalFrom(r.Context()), b.Login, b.fields())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/users/"+u.ID)
	a.ok(w, http.StatusCreated, toUserJSON(u))
	return nil
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	list, err := a.Identity.ListUsers(r.Context(), apikit.PrincipalFrom(r.Context()))
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, apikit.WholeList(list, toUserJSON))
	return nil
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	id, err := apikit.PathID(r, userIDKind)
	if err != nil {
		return err
	}
	u, err := a.Identity.GetUser(r.Context(), apikit.PrincipalFrom(r.Context()), id)
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, toUserJSON(u))
	return nil
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request) error {
	id, err := apikit.PathID(r, userIDKind)
	if err != nil {
		return err
	}
	var b userUpdateBody
	if err := a.readUserBody(r, &b, &b, userUpdateRejected); err != nil {
		return err
	}
	u, err := a.Identity.UpdateUser(r.Context(), apikit.PrincipalFrom(r.Context()), id, b.fields())
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, toUserJSON(u))
	return nil
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) error {
	id, err := apikit.PathID(r, userIDKind)
	if err != nil {
		return err
	}
	if err := a.Identity.DeleteUser(r.Context(), apikit.PrincipalFrom(r.Context()), id); err != nil {
		return err
	}
	a.ok(w, http.StatusOK, nil)
	return nil
}

// tokenJSON is an API token as listed (never its value).
type tokenJSON struct {
	TokenID    string   `json:"tokenId"`
	Name       string   `json:"name"`
	UserID     string   `json:"userId"`
	Scopes     []string `json:"scopes"`
	CreatedAt  string   `json:"createdAt"`
	ExpiresAt  *string  `json:"expiresAt"`
	LastUsedAt *string  `json:"lastUsedAt"`
	// Token is the value, only in the answer of the creation.
	Token string `json:"token,omitempty"`
}

func toTokenJSON(t *store.APIToken) tokenJSON {
	scopes := t.Scopes
	if scopes == nil {
		// A token made before scopes existed may do all its user may.
		scopes = []string{apikit.ScopeRead, apikit.ScopeRun, apikit.ScopeWrite}
		if t.Role == "admin" {
			scopes = append(scopes, apikit.ScopeAdmin)
		}
	}
	return tokenJSON{TokenID: t.ID, Name: t.Name, UserID: t.UserID, Scopes: scopes, CreatedAt: wire.Time(t.CreatedAt),
		ExpiresAt: wire.TimePtr(t.ExpiresAt), LastUsedAt: wire.TimePtr(t.LastUsedAt)}
}

// tokenBody is POST /api/v1/tokens and POST /api/v1/users/{userId}/tokens.
type tokenBody struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresAt string   `json:"expiresAt"`
}

func (a *API) createTokenFor(w http.ResponseWriter, r *http.Request, userID string) error {
	data, err := apikit.ReadBody(r, a.MaxBody)
	if err != nil {
		return err
	}
	var b tokenBody
	present, err := apikit.Decode(data, &b, apikit.DecodeOptions{})
	if err != nil {
		return err
	}
	if present["scopes"] && b.Scopes == nil {
		return apikit.Errorf(http.StatusBadRequest, "body.scopes: must be an array of scopes, got null")
	}
	t, value, err := a.Identity.CreateToken(r.Context(), apikit.PrincipalFrom(r.Context()), userID,
		identity.TokenRequest{Name: b.Name, Scopes: b.Scopes, ExpiresAt: b.ExpiresAt})
	if err != nil {
		return err
	}
	out := toTokenJSON(t)
	out.Token = value
	w.Header().Set("Location", "/api/v1/tokens/"+t.ID)
	a.ok(w, http.StatusCreated, out)
	return nil
}

// createUserToken is an admin creating a token for a user (a local user or
// a robot account).
func (a *API) createUserToken(w http.ResponseWriter, r *http.Request) error {
	id, err := apikit.PathID(r, userIDKind)
	if err != nil {
		return err
	}
	return a.createTokenFor(w, r, id)
}

// me is the caller's user id, or a clear error for a token no user owns.
func (a *API) meID(r *http.Request) (string, error) {
	p := apikit.PrincipalFrom(r.Context())
	if p.UserID == "" {
		return "", apikit.Errorf(http.StatusConflict, "this token belongs to no user (it was made before users existed); restart the server once to link it, or use a user's token")
	}
	return p.UserID, nil
}

func (a *API) createOwnToken(w http.ResponseWriter, r *http.Request) error {
	id, err := a.meID(r)
	if err != nil {
		return err
	}
	return a.createTokenFor(w, r, id)
}

func (a *API) listOwnTokens(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	id, err := a.meID(r)
	if err != nil {
		return err
	}
	list, err := a.Identity.ListTokens(r.Context(), apikit.PrincipalFrom(r.Context()), id)
	if err != nil {
		return err
	}
	a.ok(w, http.StatusOK, apikit.WholeList(list, toTokenJSON))
	return nil
}

func (a *API) deleteToken(w http.ResponseWriter, r *http.Request) error {
	id, err := apikit.PathID(r, tokenIDKind)
	if err != nil {
		return err
	}
	if err := a.Identity.DeleteToken(r.Context(), apikit.PrincipalFrom(r.Context()), id); err != nil {
		return err
	}
	a.ok(w, http.StatusOK, nil)
	return nil
}

// meJSON is GET /api/v1/me.
type meJSON struct {
	Subject string    `json:"subject"`
	Role    string    `json:"role"`
	TokenID string    `json:"tokenId"`
	Scopes  []string  `json:"scopes"`
	User    *userJSON `json:"user"`
	// Projects are the caller's roles (direct or through teams); a site
	// admin holds every role without being listed.
	Projects []grantJSON `json:"projects"`
}

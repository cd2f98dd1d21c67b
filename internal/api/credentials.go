package api

import (
	"net/http"
	"slices"

	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

// Source-code credentials: the handlers decode, call the secret service
// (package secret, which owns the rules: kinds, default hosts and users,
// tokens and keys) and encode.

var credentialIDKind = idKind{Param: "credentialId", Prefix: "cred_", Noun: "credential"}

// credentialJSON is a credential as the API shows it: the token or key is
// always "***".
type credentialJSON struct {
	CredentialID string  `json:"credentialId"`
	Name         string  `json:"name"`
	Kind         string  `json:"kind"`
	Host         string  `json:"host"`
	Username     string  `json:"username"`
	ProjectID    string  `json:"projectId"`
	AccessToken  *string `json:"accessToken,omitempty"`
	PrivateKey   *string `json:"privateKey,omitempty"`
	CreatedBy    string  `json:"createdBy"`
	CreatorID    string  `json:"creatorId"`
	CreatedAt    string  `json:"createdAt"`
	UpdatedAt    string  `json:"updatedAt"`
	// A connected account (seed 001's source-code credential): the user
	// who owns it, the provider it was connected through, the forge
	// account's login and avatar, when its access token expires (it is
	// renewed before). Empty for hand-made credentials.
	UserID    string  `json:"userId"`
	Provider  string  `json:"provider"`
	LoginName string  `json:"loginName"`
	AvatarURL string  `json:"avatarUrl"`
	ExpiresAt *string `json:"expiresAt"`
}

func toCredentialJSON(c *store.Credential) credentialJSON {
	masked := "***"
	out := credentialJSON{CredentialID: c.ID, Name: c.Name, Kind: c.Kind, Host: c.Host, Username: c.Username,
		ProjectID: c.ProjectID, CreatedBy: c.CreatedBy, CreatorID: c.CreatorID, CreatedAt: wire.Time(c.CreatedAt), UpdatedAt: wire.Time(c.UpdatedAt),
		UserID: c.OwnerID, Provider: c.Provider, LoginName: c.LoginName, AvatarURL: c.AvatarURL, ExpiresAt: wire.TimePtr(c.ExpiresAt)}
	if c.Kind == "ssh" {
		out.PrivateKey = &masked
	} else {
		out.AccessToken = &masked
	}
	return out
}

// credentialBody is POST /api/v1/credentials.
type credentialBody = secret.CreateCredentialRequest

// credentialUpdateBody is PUT /api/v1/credentials/{credentialId}: the fields
// present change. It has no kind: a field the body struct knows is decoded
// whatever decodeOptions.rejected says, so kind must not be one of them to
// be refused.
type credentialUpdateBody = secret.UpdateCredentialRequest

var credentialUpdateRejected = map[string]string{
	"kind": "a credential's kind cannot change; create a new credential and delete this one",
}

func (s *Server) createCredential(w http.ResponseWriter, r *http.Request) error {
	if err := s.secrets.Available(); err != nil {
		return err
	}
	data, err := apikit.ReadBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b credentialBody
	present, err := apikit.Decode(data, &b, apikit.DecodeOptions{})
	if err != nil {
		return err
	}
	b.AccessTokenJSON, b.PrivateKeyJSON = rawField(data, "accessToken"), rawField(data, "privateKey")
	c, err := s.secrets.CreateCredential(r.Context(), &b, presence(present), apikit.PrincipalFrom(r.Context()).Subject)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/credentials/"+c.ID)
	s.ok(w, http.StatusCreated, toCredentialJSON(c))
	return nil
}

func (s *Server) listCredentials(w http.ResponseWriter, r *http.Request) error {
	q, err := apikit.ParseQuery(r.URL.RawQuery, "projectId", "creatorId")
	if err != nil {
		return err
	}
	if err := checkCreatorID(q); err != nil {
		return err
	}
	if q.Has("projectId") {
		if err := check.ProjectID("query parameter projectId", q.Str("projectId")); err != nil {
			return err
		}
	}
	list, err := s.secrets.ListCredentials(r.Context(), q.Str("projectId"))
	if err != nil {
		return err
	}
	if id := q.Str("creatorId"); id != "" {
		list = slices.DeleteFunc(list, func(c *store.Credential) bool { return c.CreatorID != id })
	}
	s.ok(w, http.StatusOK, apikit.WholeList(list, toCredentialJSON))
	return nil
}

// loadCredential returns the path's credential, or a 404 that names it.
func (s *Server) loadCredential(r *http.Request) (*store.Credential, error) {
	id, err := pathID(r, credentialIDKind)
	if err != nil {
		return nil, err
	}
	return s.secrets.GetCredential(r.Context(), id)
}

func (s *Server) getCredential(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	c, err := s.loadCredential(r)
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, toCredentialJSON(c))
	return nil
}

func (s *Server) updateCredential(w http.ResponseWriter, r *http.Request) error {
	if err := s.secrets.Available(); err != nil {
		return err
	}
	c, err := s.loadCredential(r)
	if err != nil {
		return err
	}
	data, err := apikit.ReadBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b credentialUpdateBody
	present, err := apikit.Decode(data, &b, apikit.DecodeOptions{Rejected: credentialUpdateRejected})
	if err != nil {
		return err
	}
	b.AccessTokenJSON, b.PrivateKeyJSON = rawField(data, "accessToken"), rawField(data, "privateKey")
	c, err = s.secrets.UpdateCredential(r.Context(), c, &b, presence(present))
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, toCredentialJSON(c))
	return nil
}

func (s *Server) deleteCredential(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, credentialIDKind)
	if err != nil {
		return err
	}
	// Disconnecting an account revokes its token at the forge where the
	// forge allows it; a forge that fails does not keep the credential.
	if c, err := s.secrets.GetCredential(r.Context(), id); err == nil && c.Provider != "" {
		if _, err := s.repos.Revoke(r.Context(), c); err != nil {
			s.log.Warn("the forge did not revoke a disconnected account's token", "credential_id", id, "err", err)
		}
	}
	if err := s.secrets.DeleteCredential(r.Context(), id); err != nil {
		return err
	}
	s.ok(w, http.StatusOK, nil)
	return nil
}

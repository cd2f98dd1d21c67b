package api

import (
	"encoding/json"
	"net/http"

	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/secret"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

// Secrets (and credentials, credentials.go): the handlers decode, call the
// secret service (package secret, which owns the rules) and encode.

// Sealer encrypts secret values for storage (secret.Keyring implements it).
type Sealer interface {
	Seal(secretID string, value []byte) (ciphertext []byte, keyID string)
}

var secretIDKind = idKind{Param: "secretId", Prefix: "sec_", Noun: "secret"}

// maxSecretBytes and validJSONText are the secret package's rules, by the
// names this package's tests know them.
const maxSecretBytes = secret.MaxSecretBytes

func validJSONText(raw []byte) bool { return secret.ValidJSONText(raw) }

// secretJSON is a secret as the API shows it: never its value.
type secretJSON struct {
	SecretID   string `json:"secretId"`
	Name       string `json:"name"`
	Scope      string `json:"scope"`
	ProjectID  string `json:"projectId,omitempty"`
	PipelineID string `json:"pipelineId,omitempty"`
	CreatedBy  string `json:"createdBy"`
	CreatedAt  string `json:"createdAt"`
	UpdatedAt  string `json:"updatedAt"`
}

func toSecretJSON(x *store.Secret) secretJSON {
	out := secretJSON{SecretID: x.ID, Name: x.Name, Scope: x.Scope, CreatedBy: x.CreatedBy,
		CreatedAt: wire.Time(x.CreatedAt), UpdatedAt: wire.Time(x.UpdatedAt)}
	if x.Scope == "project" {
		out.ProjectID = x.ScopeID
	} else {
		out.PipelineID = x.ScopeID
	}
	return out
}

// secretBody is POST /api/v1/secrets.
type secretBody = secret.CreateSecretRequest

// secretUpdateBody is PUT /api/v1/secrets/{secretId}: the fields present change.
type secretUpdateBody = secret.UpdateSecretRequest

var secretUpdateRejected = map[string]string{
	"projectId":  "a secret's scope cannot change; create a new secret and delete this one",
	"pipelineId": "a secret's scope cannot change; create a new secret and delete this one",
}

// rawField returns the JSON text of a top-level field of a body that
// decodeJSON accepted (so an object without repeated fields).
func rawField(data []byte, name string) json.RawMessage {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(data, &m)
	return m[name]
}

// presence is the secret service's view of the fields decodeJSON found.
func presence(present map[string]bool) secret.Present {
	return func(field string) bool { return present[field] }
}

func (s *Server) sealer() (Sealer, error) {
	if s.seal == nil {
		return nil, apikit.Errorf(http.StatusServiceUnavailable, "secrets are not available: this server has no secret key configured")
	}
	return s.seal, nil
}

func (s *Server) createSecret(w http.ResponseWriter, r *http.Request) error {
	if err := s.secrets.Available(); err != nil {
		return err
	}
	data, err := apikit.ReadBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b secretBody
	present, err := apikit.Decode(data, &b, apikit.DecodeOptions{})
	if err != nil {
		return err
	}
	b.ValueJSON = rawField(data, "value")
	x, err := s.secrets.CreateSecret(r.Context(), &b, presence(present), apikit.PrincipalFrom(r.Context()).Subject)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/secrets/"+x.ID)
	s.ok(w, http.StatusCreated, toSecretJSON(x))
	return nil
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) error {
	q, err := apikit.ParseQuery(r.URL.RawQuery, "projectId", "pipelineId")
	if err != nil {
		return err
	}
	var f store.SecretFilter
	switch {
	case q.Has("projectId") && q.Has("pipelineId"):
		return apikit.Errorf(http.StatusBadRequest, "query: give projectId or pipelineId, not both")
	case q.Has("projectId"):
		if err := check.ProjectID("query parameter projectId", q.Str("projectId")); err != nil {
			return err
		}
		f = store.SecretFilter{Scope: "project", ScopeID: q.Str("projectId")}
	case q.Has("pipelineId"):
		// An empty ScopeID would match every pipeline's secrets.
		if id := q.Str("pipelineId"); !apikit.IsID(id, pipelineID.Prefix) {
			return apikit.Errorf(http.StatusBadRequest, "query parameter pipelineId: %q is not a pipeline id; pipeline ids are pl_ followed by 10 to 40 lowercase letters and digits", id)
		}
		f = store.SecretFilter{Scope: "pipeline", ScopeID: q.Str("pipelineId")}
	}
	list, err := s.secrets.ListSecrets(r.Context(), f)
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, apikit.WholeList(list, toSecretJSON))
	return nil
}

// loadSecret returns the path's secret, or a 404 that names it.
func (s *Server) loadSecret(r *http.Request) (*store.Secret, error) {
	id, err := pathID(r, secretIDKind)
	if err != nil {
		return nil, err
	}
	return s.secrets.GetSecret(r.Context(), id)
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) error {
	if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	x, err := s.loadSecret(r)
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, toSecretJSON(x))
	return nil
}

func (s *Server) updateSecret(w http.ResponseWriter, r *http.Request) error {
	if err := s.secrets.Available(); err != nil {
		return err
	}
	x, err := s.loadSecret(r)
	if err != nil {
		return err
	}
	data, err := apikit.ReadBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b secretUpdateBody
	present, err := apikit.Decode(data, &b, apikit.DecodeOptions{Rejected: secretUpdateRejected})
	if err != nil {
		return err
	}
	b.ValueJSON = rawField(data, "value")
	x, err = s.secrets.UpdateSecret(r.Context(), x, &b, presence(present))
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, toSecretJSON(x))
	return nil
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, secretIDKind)
	if err != nil {
		return err
	}
	if err := s.secrets.DeleteSecret(r.Context(), id); err != nil {
		return err
	}
	s.ok(w, http.StatusOK, nil)
	return nil
}

package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/mask"
	"github.com/runnel-ci/runnel/internal/store"
)

// Sealer encrypts secret values for storage (secret.Keyring implements it).
type Sealer interface {
	Seal(secretID string, value []byte) (ciphertext []byte, keyID string)
}

var (
	secretIDKind   = idKind{"secretId", "sec_", "secret"}
	secretNameRe   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`) })
	maxSecretBytes = 64 << 10
)

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
		CreatedAt: isoTime(x.CreatedAt), UpdatedAt: isoTime(x.UpdatedAt)}
	if x.Scope == "project" {
		out.ProjectID = x.ScopeID
	} else {
		out.PipelineID = x.ScopeID
	}
	return out
}

type secretBody struct {
	Name       string `json:"name"`
	Value      string `json:"value"`
	ProjectID  string `json:"projectId"`
	PipelineID string `json:"pipelineId"`
}

func checkSecretName(v string) error {
	if !secretNameRe().MatchString(v) {
		return errorf(http.StatusBadRequest, "body.name: %q is not a secret name; use letters, digits and '_', starting with a letter or '_' (at most 128), as for an environment variable", v)
	}
	return nil
}

// checkSecretValue checks a value; raw is its JSON text in the body.
func checkSecretValue(v string, raw json.RawMessage) error {
	switch {
	case len(v) < mask.MinLen:
		return errorf(http.StatusBadRequest, "body.value: at least %d bytes: shorter values cannot be masked in logs", mask.MinLen)
	case len(v) > maxSecretBytes:
		return errorf(http.StatusBadRequest, "body.value: %s, at most %s", formatBytes(int64(len(v))), formatBytes(int64(maxSecretBytes)))
	case !utf8.ValidString(v) || !validJSONText(raw):
		// encoding/json turns invalid UTF-8 (and lone surrogate escapes) into
		// U+FFFD without an error: without the check on the raw text, the
		// value stored would silently differ from the one sent.
		return errorf(http.StatusBadRequest, "body.value: must be valid UTF-8 text (encode binary values, e.g. in base64)")
	case strings.IndexByte(v, 0) >= 0:
		return errorf(http.StatusBadRequest, "body.value: contains a NUL character, which no environment variable or argument can hold")
	case mask.New([]string{v}) == nil:
		// Masking is per line: a value whose every line is short would be
		// shown in logs as is.
		return errorf(http.StatusBadRequest, "body.value: no line of it is at least %d bytes long: shorter lines cannot be masked in logs", mask.MinLen)
	}
	return nil
}

// rawField returns the JSON text of a top-level field of a body that
// decodeJSON accepted (so an object without repeated fields).
func rawField(data []byte, name string) json.RawMessage {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(data, &m)
	return m[name]
}

// validJSONText reports whether a JSON text is valid UTF-8 and every \u
// escape of a UTF-16 surrogate is half of a pair.
func validJSONText(raw []byte) bool {
	if !utf8.Valid(raw) {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++ // the escaped character: "\\" is skipped whole
		if i >= len(raw) || raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw[i+1:])
		if !ok {
			return false
		}
		i += 4
		switch {
		case r >= 0xD800 && r < 0xDC00: // high half: a low half must follow
			if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return false
			}
			lo, ok := hex4(raw[i+3:])
			if !ok || lo < 0xDC00 || lo >= 0xE000 {
				return false
			}
			i += 6
		case r >= 0xDC00 && r < 0xE000: // a low half alone
			return false
		}
	}
	return true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 16)
	return rune(n), err == nil
}

func (s *Server) sealer() (Sealer, error) {
	if s.seal == nil {
		return nil, errorf(http.StatusServiceUnavailable, "secrets are not available: this server has no secret key configured")
	}
	return s.seal, nil
}

func (s *Server) createSecret(w http.ResponseWriter, r *http.Request) error {
	seal, err := s.sealer()
	if err != nil {
		return err
	}
	data, err := readBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b secretBody
	present, err := decodeJSON(data, &b, decodeOptions{})
	if err != nil {
		return err
	}
	if err := checkSecretName(b.Name); err != nil {
		return err
	}
	if !present["value"] {
		return errorf(http.StatusBadRequest, "body.value: required")
	}
	if err := checkSecretValue(b.Value, rawField(data, "value")); err != nil {
		return err
	}
	x := &store.Secret{ID: newID("sec_"), Name: b.Name, CreatedBy: principalFrom(r.Context()).Subject}
	switch {
	case b.ProjectID != "" && b.PipelineID != "":
		return errorf(http.StatusBadRequest, "body: give projectId or pipelineId, not both")
	case b.ProjectID != "":
		if err := check.ProjectID("body.projectId", b.ProjectID); err != nil {
			return err
		}
		x.Scope, x.ScopeID = "project", b.ProjectID
	case b.PipelineID != "":
		if _, err := s.st.GetPipeline(r.Context(), b.PipelineID); errors.Is(err, runnel.ErrNotFound) {
			return errorf(http.StatusNotFound, "body.pipelineId: pipeline %s not found", b.PipelineID)
		} else if err != nil {
			return fmt.Errorf("get pipeline %s: %w", b.PipelineID, err)
		}
		x.Scope, x.ScopeID = "pipeline", b.PipelineID
	default:
		return errorf(http.StatusBadRequest, "body: give projectId (a secret for every pipeline of the project) or pipelineId (for one pipeline)")
	}
	now := s.now().UTC()
	x.CreatedAt, x.UpdatedAt = now, now
	x.Ciphertext, x.KeyID = seal.Seal(x.ID, []byte(b.Value))
	if err := s.st.CreateSecret(r.Context(), x); err != nil {
		if errors.Is(err, runnel.ErrConflict) {
			return errorf(http.StatusConflict, "body.name: the %s %s already has a secret named %s; change it with PUT /api/v1/secrets/{secretId}", x.Scope, x.ScopeID, x.Name)
		}
		return fmt.Errorf("create secret: %w", err)
	}
	w.Header().Set("Location", "/api/v1/secrets/"+x.ID)
	s.ok(w, http.StatusCreated, toSecretJSON(x))
	return nil
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r.URL.RawQuery, "projectId", "pipelineId")
	if err != nil {
		return err
	}
	var f store.SecretFilter
	switch {
	case q.has("projectId") && q.has("pipelineId"):
		return errorf(http.StatusBadRequest, "query: give projectId or pipelineId, not both")
	case q.has("projectId"):
		if err := check.ProjectID("query parameter projectId", q.str("projectId")); err != nil {
			return err
		}
		f = store.SecretFilter{Scope: "project", ScopeID: q.str("projectId")}
	case q.has("pipelineId"):
		// An empty ScopeID would match every pipeline's secrets.
		if id := q.str("pipelineId"); !idPattern().MatchString(id) || !strings.HasPrefix(id, pipelineID.prefix) {
			return errorf(http.StatusBadRequest, "query parameter pipelineId: %q is not a pipeline id; pipeline ids are pl_ followed by 10 to 40 lowercase letters and digits", id)
		}
		f = store.SecretFilter{Scope: "pipeline", ScopeID: q.str("pipelineId")}
	}
	list, err := s.st.ListSecrets(r.Context(), f)
	if err != nil {
		return fmt.Errorf("list secrets: %w", err)
	}
	s.ok(w, http.StatusOK, wholeList(list, toSecretJSON))
	return nil
}

func (s *Server) loadSecret(r *http.Request) (*store.Secret, error) {
	return loadByPath(r, secretIDKind, s.st.GetSecret)
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) error {
	if _, err := parseQuery(r.URL.RawQuery); err != nil {
		return err
	}
	x, err := s.loadSecret(r)
	if err != nil {
		return err
	}
	s.ok(w, http.StatusOK, toSecretJSON(x))
	return nil
}

// secretUpdateBody is PUT /api/v1/secrets/{secretId}: the fields present change.
type secretUpdateBody struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

var secretUpdateRejected = map[string]string{
	"projectId":  "a secret's scope cannot change; create a new secret and delete this one",
	"pipelineId": "a secret's scope cannot change; create a new secret and delete this one",
}

func (s *Server) updateSecret(w http.ResponseWriter, r *http.Request) error {
	seal, err := s.sealer()
	if err != nil {
		return err
	}
	x, err := s.loadSecret(r)
	if err != nil {
		return err
	}
	data, err := readBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b secretUpdateBody
	present, err := decodeJSON(data, &b, decodeOptions{rejected: secretUpdateRejected})
	if err != nil {
		return err
	}
	if !present["name"] && !present["value"] {
		return errorf(http.StatusBadRequest, "body: give name, value or both")
	}
	if present["name"] {
		if err := checkSecretName(b.Name); err != nil {
			return err
		}
		x.Name = b.Name
	}
	if present["value"] {
		if err := checkSecretValue(b.Value, rawField(data, "value")); err != nil {
			return err
		}
		x.Ciphertext, x.KeyID = seal.Seal(x.ID, []byte(b.Value))
	}
	x.UpdatedAt = s.now().UTC()
	if err := s.st.UpdateSecret(r.Context(), x); err != nil {
		switch {
		case errors.Is(err, runnel.ErrNotFound):
			return errorf(http.StatusNotFound, "secret %s not found", x.ID)
		case errors.Is(err, runnel.ErrConflict):
			return errorf(http.StatusConflict, "body.name: the %s %s already has a secret named %s", x.Scope, x.ScopeID, x.Name)
		}
		return fmt.Errorf("update secret %s: %w", x.ID, err)
	}
	s.ok(w, http.StatusOK, toSecretJSON(x))
	return nil
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, secretIDKind)
	if err != nil {
		return err
	}
	if err := s.st.DeleteSecret(r.Context(), id); err != nil {
		if errors.Is(err, runnel.ErrNotFound) {
			return errorf(http.StatusNotFound, "secret %s not found", id)
		}
		return fmt.Errorf("delete secret %s: %w", id, err)
	}
	s.ok(w, http.StatusOK, nil)
	return nil
}

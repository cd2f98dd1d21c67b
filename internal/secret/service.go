package secret

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/access"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/store"
)

// The secret service: the rules of creating, changing and deleting secrets
// (values for steps, scoped to a project or a pipeline) and source-code
// credentials (what git fetches with). The HTTP API decodes a request, calls
// the service and encodes its answer; the rules live here and in rules.go.
//
// Errors are domain errors (runnel.Error) whose messages name the request
// field at fault as the API spells it (body.name), or wrapped store errors.

// Store is what the service reads and writes.
type Store interface {
	GetPipeline(ctx context.Context, id string) (*store.Pipeline, error)

	CreateSecret(ctx context.Context, s *store.Secret) error
	GetSecret(ctx context.Context, id string) (*store.Secret, error)
	ListSecrets(ctx context.Context, f store.SecretFilter) ([]*store.Secret, error)
	UpdateSecret(ctx context.Context, s *store.Secret) error
	DeleteSecret(ctx context.Context, id string) error

	CreateCredential(ctx context.Context, c *store.Credential) error
	GetCredential(ctx context.Context, id string) (*store.Credential, error)
	ListCredentials(ctx context.Context, projectID string) ([]*store.Credential, error)
	UpdateCredential(ctx context.Context, c *store.Credential) error
	DeleteCredential(ctx context.Context, id string) error
}

// Sealer seals secret values for storage (Keyring implements it).
type Sealer interface {
	Seal(secretID string, value []byte) (ciphertext []byte, keyID string)
}

// Options configure a Service. Store is required.
type Options struct {
	Store Store
	// Sealer seals values; nil: nothing can be created or changed
	// (ErrUnavailable).
	Sealer Sealer
	// Access decides who may create secrets and credentials where, and
	// filters lists; nil: no checks (tests of other rules).
	Access *access.Policy
	// Clock is time.Now unless a test fixes it.
	Clock  func() time.Time
	Logger *slog.Logger
}

// require checks the caller holds need in project projectID (no Access:
// no check).
func (s *Service) require(ctx context.Context, projectID string, need access.Role, t access.Target, action string) error {
	if s.o.Access == nil {
		return nil
	}
	return s.o.Access.Require(ctx, projectID, need, t, action)
}

// requireSiteAdmin is for site-wide credentials.
func (s *Service) requireSiteAdmin(ctx context.Context, action string) error {
	if s.o.Access == nil {
		return nil
	}
	if c, ok := runnel.PrincipalFrom(ctx); ok && !c.SiteAdmin() {
		return runnel.Errorf(runnel.ErrForbidden, "%s needs a site admin: give body.projectId to limit it to a project you maintain", action)
	}
	return nil
}

// view is the caller's view (everything without Access).
func (s *Service) view(ctx context.Context) (access.View, error) {
	if s.o.Access == nil {
		return access.View{All: true}, nil
	}
	return s.o.Access.ViewOf(ctx)
}

// Service applies the secret and credential rules. It is safe for
// concurrent use.
type Service struct {
	o Options
}

// NewService returns a Service.
func NewService(o Options) *Service {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{o: o}
}

func (s *Service) now() time.Time { return s.o.Clock() }

// Present tells which fields a request carries (by their JSON names).
type Present func(field string) bool

// errNoKey answers what needs sealing on a server without a secret key.
var errNoKey = runnel.Errorf(runnel.ErrUnavailable, "secrets are not available: this server has no secret key configured")

// Available is nil when the service can seal values, else the
// ErrUnavailable error that says why not. Creating and changing secrets and
// credentials check it first, before anything else about the request.
func (s *Service) Available() error {
	if s.o.Sealer == nil {
		return errNoKey
	}
	return nil
}

// CreateSecretRequest is POST /api/v1/secrets.
type CreateSecretRequest struct {
	Name       string `json:"name"`
	Value      string `json:"value"`
	ProjectID  string `json:"projectId"`
	PipelineID string `json:"pipelineId"`
	// ValueJSON is value's JSON text in the request body: encoding/json
	// turns invalid UTF-8 and lone surrogate escapes into U+FFFD without an
	// error, which only the text tells.
	ValueJSON json.RawMessage `json:"-"`
}

// UpdateSecretRequest is PUT /api/v1/secrets/{secretId}: the fields present
// change.
type UpdateSecretRequest struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// ValueJSON is value's JSON text in the request body (see
	// CreateSecretRequest).
	ValueJSON json.RawMessage `json:"-"`
}

// CreateSecret checks, seals and stores a new secret of the project or the
// pipeline the request names; createdBy is who asks.
func (s *Service) CreateSecret(ctx context.Context, req *CreateSecretRequest, present Present, createdBy string) (*store.Secret, error) {
	if err := s.Available(); err != nil {
		return nil, err
	}
	if err := CheckSecretName(req.Name); err != nil {
		return nil, err
	}
	if !present("value") {
		return nil, runnel.Invalidf("body.value: required")
	}
	if err := CheckSecretValue(req.Value, req.ValueJSON); err != nil {
		return nil, err
	}
	x := &store.Secret{ID: runnel.NewID("sec"), Name: req.Name, CreatedBy: createdBy}
	switch {
	case req.ProjectID != "" && req.PipelineID != "":
		return nil, runnel.Invalidf("body: give projectId or pipelineId, not both")
	case req.ProjectID != "":
		if err := check.ProjectID("body.projectId", req.ProjectID); err != nil {
			return nil, err
		}
		if err := s.require(ctx, req.ProjectID, access.Maintainer, access.Target{Noun: "body.projectId: project", ID: req.ProjectID}, "creating a secret in project "+req.ProjectID); err != nil {
			return nil, err
		}
		x.Scope, x.ScopeID = "project", req.ProjectID
	case req.PipelineID != "":
		pl, err := s.o.Store.GetPipeline(ctx, req.PipelineID)
		if errors.Is(err, runnel.ErrNotFound) {
			return nil, runnel.Errorf(runnel.ErrNotFound, "body.pipelineId: pipeline %s not found", req.PipelineID)
		} else if err != nil {
			return nil, fmt.Errorf("get pipeline %s: %w", req.PipelineID, err)
		}
		if err := s.require(ctx, pl.ProjectID, access.Maintainer, access.Target{Noun: "body.pipelineId: pipeline", ID: req.PipelineID}, "creating a secret of pipeline "+req.PipelineID); err != nil {
			return nil, err
		}
		x.Scope, x.ScopeID = "pipeline", req.PipelineID
	default:
		return nil, runnel.Invalidf("body: give projectId (a secret for every pipeline of the project) or pipelineId (for one pipeline)")
	}
	now := s.now().UTC()
	x.CreatedAt, x.UpdatedAt = now, now
	x.Ciphertext, x.KeyID = s.o.Sealer.Seal(x.ID, []byte(req.Value))
	if err := s.o.Store.CreateSecret(ctx, x); err != nil {
		if errors.Is(err, runnel.ErrConflict) {
			return nil, runnel.Errorf(runnel.ErrConflict, "body.name: the %s %s already has a secret named %s; change it with PUT /api/v1/secrets/{secretId}", x.Scope, x.ScopeID, x.Name)
		}
		return nil, fmt.Errorf("create secret: %w", err)
	}
	return x, nil
}

// GetSecret returns a secret (its sealed value with it); a missing one is
// ErrNotFound naming it.
func (s *Service) GetSecret(ctx context.Context, id string) (*store.Secret, error) {
	x, err := s.o.Store.GetSecret(ctx, id)
	return x, runnel.About(err, "get", "secret", id)
}

// ListSecrets lists the secrets f selects.
func (s *Service) ListSecrets(ctx context.Context, f store.SecretFilter) ([]*store.Secret, error) {
	v, err := s.view(ctx)
	if err != nil {
		return nil, err
	}
	list, err := s.o.Store.ListSecrets(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	if v.All {
		return list, nil
	}
	// Only the projects the caller sees: a pipeline's secret by its
	// pipeline's project.
	projectOf := map[string]string{}
	out := list[:0]
	for _, x := range list {
		p := x.ScopeID
		if x.Scope == "pipeline" {
			var ok bool
			if p, ok = projectOf[x.ScopeID]; !ok {
				if pl, err := s.o.Store.GetPipeline(ctx, x.ScopeID); err == nil {
					p = pl.ProjectID
				}
				projectOf[x.ScopeID] = p
			}
		}
		if v.Sees(p) {
			out = append(out, x)
		}
	}
	return out, nil
}

// UpdateSecret changes the name, the value or both (the fields present) of
// x, a secret read with GetSecret, and returns it as stored. Its scope never
// changes.
func (s *Service) UpdateSecret(ctx context.Context, x *store.Secret, req *UpdateSecretRequest, present Present) (*store.Secret, error) {
	if err := s.Available(); err != nil {
		return nil, err
	}
	if !present("name") && !present("value") {
		return nil, runnel.Invalidf("body: give name, value or both")
	}
	if present("name") {
		if err := CheckSecretName(req.Name); err != nil {
			return nil, err
		}
		x.Name = req.Name
	}
	if present("value") {
		if err := CheckSecretValue(req.Value, req.ValueJSON); err != nil {
			return nil, err
		}
		x.Ciphertext, x.KeyID = s.o.Sealer.Seal(x.ID, []byte(req.Value))
	}
	x.UpdatedAt = s.now().UTC()
	if err := s.o.Store.UpdateSecret(ctx, x); err != nil {
		switch {
		case errors.Is(err, runnel.ErrNotFound):
			return nil, runnel.Errorf(runnel.ErrNotFound, "secret %s not found", x.ID)
		case errors.Is(err, runnel.ErrConflict):
			return nil, runnel.Errorf(runnel.ErrConflict, "body.name: the %s %s already has a secret named %s", x.Scope, x.ScopeID, x.Name)
		}
		return nil, fmt.Errorf("update secret %s: %w", x.ID, err)
	}
	return x, nil
}

// DeleteSecret removes a secret.
func (s *Service) DeleteSecret(ctx context.Context, id string) error {
	return runnel.About(s.o.Store.DeleteSecret(ctx, id), "delete", "secret", id)
}

// CreateCredentialRequest is POST /api/v1/credentials.
type CreateCredentialRequest struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	Host        string `json:"host"`
	Username    string `json:"username"`
	ProjectID   string `json:"projectId"`
	AccessToken string `json:"accessToken"`
	PrivateKey  string `json:"privateKey"`
	// AccessTokenJSON and PrivateKeyJSON are the fields' JSON text in the
	// request body (see CreateSecretRequest.ValueJSON).
	AccessTokenJSON json.RawMessage `json:"-"`
	PrivateKeyJSON  json.RawMessage `json:"-"`
}

// UpdateCredentialRequest is PUT /api/v1/credentials/{credentialId}: the
// fields present change. It has no kind: a credential's kind never changes
// (and the API's decoder decodes a field the request struct knows whatever
// it is told to refuse, so kind must not be one of them to be refused).
type UpdateCredentialRequest struct {
	Name        string `json:"name"`
	Host        string `json:"host"`
	Username    string `json:"username"`
	ProjectID   string `json:"projectId"`
	AccessToken string `json:"accessToken"`
	PrivateKey  string `json:"privateKey"`
	// AccessTokenJSON and PrivateKeyJSON are the fields' JSON text in the
	// request body (see CreateSecretRequest.ValueJSON).
	AccessTokenJSON json.RawMessage `json:"-"`
	PrivateKeyJSON  json.RawMessage `json:"-"`
}

// CreateCredential checks, seals and stores a new credential; createdBy is
// who asks. An empty host or username is the kind's default.
func (s *Service) CreateCredential(ctx context.Context, req *CreateCredentialRequest, present Present, createdBy string) (*store.Credential, error) {
	if err := s.Available(); err != nil {
		return nil, err
	}
	if err := check.Name("body.name", req.Name); err != nil {
		return nil, err
	}
	if err := check.Enum("body.kind", req.Kind, CredentialKinds...); err != nil {
		return nil, err
	}
	f := CredentialFields{Kind: req.Kind, Host: req.Host, Username: req.Username, ProjectID: req.ProjectID}
	if err := f.Check(); err != nil {
		return nil, err
	}
	if err := s.checkCredentialProject(ctx, f.ProjectID, "creating a credential"); err != nil {
		return nil, err
	}
	m := CredentialSecret{AccessToken: req.AccessToken, PrivateKey: req.PrivateKey,
		AccessTokenJSON: req.AccessTokenJSON, PrivateKeyJSON: req.PrivateKeyJSON}
	secretValue, err := CheckCredentialSecret(req.Kind, m, present, true)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	c := &store.Credential{ID: runnel.NewID("cred"), Name: req.Name, Kind: req.Kind, Host: f.Host, Username: f.Username,
		ProjectID: f.ProjectID, CreatedBy: createdBy, CreatorID: creatorOf(ctx), CreatedAt: now, UpdatedAt: now}
	c.Ciphertext, c.KeyID = s.o.Sealer.Seal(c.ID, []byte(secretValue))
	if err := s.o.Store.CreateCredential(ctx, c); err != nil {
		if errors.Is(err, runnel.ErrConflict) {
			return nil, runnel.Errorf(runnel.ErrConflict, "body.name: a credential named %q exists (names are unique on the server); change it with PUT /api/v1/credentials/{credentialId}", c.Name)
		}
		return nil, fmt.Errorf("create credential: %w", err)
	}
	return c, nil
}

// GetCredential returns a credential (its sealed secret with it); a missing
// one is ErrNotFound naming it.
func (s *Service) GetCredential(ctx context.Context, id string) (*store.Credential, error) {
	c, err := s.o.Store.GetCredential(ctx, id)
	return c, runnel.About(err, "get", "credential", id)
}

// ListCredentials lists credentials by name: those limited to projectID
// ("" every credential).
func (s *Service) ListCredentials(ctx context.Context, projectID string) ([]*store.Credential, error) {
	v, err := s.view(ctx)
	if err != nil {
		return nil, err
	}
	list, err := s.o.Store.ListCredentials(ctx, projectID)
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	if v.All {
		return list, nil
	}
	out := list[:0]
	for _, c := range list {
		// Site-wide credentials are everyone's to use (never to read: no
		// value is ever shown).
		if c.OwnerID != "" {
			// A connected account: its owner's alone.
			if who, ok := runnel.PrincipalFrom(ctx); !ok || who.UserID == c.OwnerID {
				out = append(out, c)
			}
			continue
		}
		if c.ProjectID == "" || v.Sees(c.ProjectID) {
			out = append(out, c)
		}
	}
	return out, nil
}

// checkCredentialProject checks the caller may put a credential in project
// projectID: its maintainer, or a site admin for a site-wide one ("").
func (s *Service) checkCredentialProject(ctx context.Context, projectID, action string) error {
	if projectID == "" {
		return s.requireSiteAdmin(ctx, action+" for every project")
	}
	return s.require(ctx, projectID, access.Maintainer, access.Target{Noun: "body.projectId: project", ID: projectID}, action+" in project "+projectID)
}

// updateCredentialFields are the fields an update may carry.
var updateCredentialFields = []string{"name", "host", "username", "projectId", "accessToken", "privateKey"}

// UpdateCredential changes the fields present of c, a credential read with
// GetCredential, and returns it as stored. An empty host or username goes
// back to the kind's default; an empty projectId lifts the restriction.
func (s *Service) UpdateCredential(ctx context.Context, c *store.Credential, req *UpdateCredentialRequest, present Present) (*store.Credential, error) {
	if err := s.Available(); err != nil {
		return nil, err
	}
	some := false
	for _, field := range updateCredentialFields {
		some = some || present(field)
	}
	if !some {
		return nil, runnel.Invalidf("body: give at least one of name, host, username, projectId, accessToken, privateKey")
	}
	name := c.Name
	if present("name") {
		if err := check.Name("body.name", req.Name); err != nil {
			return nil, err
		}
		name = req.Name
	}
	f := CredentialFields{Kind: c.Kind, Host: c.Host, Username: c.Username, ProjectID: c.ProjectID}
	if present("host") {
		f.Host = req.Host
	}
	if present("username") {
		f.Username = req.Username
	}
	if present("projectId") {
		f.ProjectID = req.ProjectID
	}
	if err := f.Check(); err != nil {
		return nil, err
	}
	if f.ProjectID != c.ProjectID {
		if err := s.checkCredentialProject(ctx, f.ProjectID, "moving a credential"); err != nil {
			return nil, err
		}
	}
	m := CredentialSecret{AccessToken: req.AccessToken, PrivateKey: req.PrivateKey,
		AccessTokenJSON: req.AccessTokenJSON, PrivateKeyJSON: req.PrivateKeyJSON}
	secretValue, err := CheckCredentialSecret(c.Kind, m, present, false)
	if err != nil {
		return nil, err
	}
	c.Name, c.Host, c.Username, c.ProjectID = name, f.Host, f.Username, f.ProjectID
	if secretValue != "" {
		c.Ciphertext, c.KeyID = s.o.Sealer.Seal(c.ID, []byte(secretValue))
	}
	c.UpdatedAt = s.now().UTC()
	if err := s.o.Store.UpdateCredential(ctx, c); err != nil {
		switch {
		case errors.Is(err, runnel.ErrNotFound):
			return nil, runnel.Errorf(runnel.ErrNotFound, "credential %s not found", c.ID)
		case errors.Is(err, runnel.ErrConflict):
			return nil, runnel.Errorf(runnel.ErrConflict, "body.name: a credential named %q exists (names are unique on the server)", c.Name)
		}
		return nil, fmt.Errorf("update credential %s: %w", c.ID, err)
	}
	return c, nil
}

// DeleteCredential removes a credential.
func (s *Service) DeleteCredential(ctx context.Context, id string) error {
	return runnel.About(s.o.Store.DeleteCredential(ctx, id), "delete", "credential", id)
}

// creatorOf is the id of the user who asks ("" for Runnel's own work).
func creatorOf(ctx context.Context) string {
	c, _ := runnel.PrincipalFrom(ctx)
	return c.UserID
}

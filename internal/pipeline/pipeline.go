// Package pipeline is the pipeline service: the rules of creating, changing
// and deleting pipelines (fields, save mode, credential, cron schedule,
// webhook secret), and of their definitions (checking, the canonical form,
// stored versions, and definitions kept in Git). The HTTP API decodes a
// request, calls the service and encodes its answer; the rules live here.
//
// Errors are domain errors (runnel.Error, or wrapped sentinels) whose
// messages name the request field at fault as the API spells it
// (body.name), plus *InvalidSpecError (every problem of a definition) and
// *StaleHeadError (a save against a head that moved).
package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/access"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/gitdef"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/trigger/cron"
)

// Store is what the service reads and writes.
type Store interface {
	CreatePipeline(ctx context.Context, p *store.Pipeline) error
	GetPipeline(ctx context.Context, id string) (*store.Pipeline, error)
	ListPipelines(ctx context.Context, f store.PipelineFilter) ([]*store.Pipeline, int, error)
	UpdatePipeline(ctx context.Context, p *store.Pipeline) error
	DeletePipeline(ctx context.Context, id string) error
	SaveSpec(ctx context.Context, sv *store.SpecVersion, expectedHead string) (*store.SpecVersion, bool, error)
	GetSpec(ctx context.Context, pipelineID string, version int) (*store.SpecVersion, error)
	SpecByRequest(ctx context.Context, pipelineID, requestID string) (*store.SpecVersion, error)
	GetCredential(ctx context.Context, id string) (*store.Credential, error)
	SetWebhookSecret(ctx context.Context, w *store.PipelineWebhook) error
	GetWebhookSecret(ctx context.Context, pipelineID string) (*store.PipelineWebhook, error)
}

// Sealer seals secret values (secret.Keyring implements it).
type Sealer interface {
	Seal(secretID string, value []byte) (ciphertext []byte, keyID string)
}

// Options configure a Service. Store is required.
type Options struct {
	Store Store
	// Catalog resolves `uses` when definitions are checked (nil: the
	// built-in actions).
	Catalog spec.ActionCatalog
	// Git reads and writes the definitions of pipelines with a repoUrl; nil:
	// those pipelines' definitions are stored versions like any other's.
	Git *gitdef.Source
	// Sealer seals webhook secrets; nil: they cannot be set (ErrUnavailable).
	Sealer Sealer
	// CronMinInterval is the shortest interval a schedule may tick at (the
	// cron service's; 0: cron.DefaultMinInterval).
	CronMinInterval time.Duration
	// Access filters lists to the projects the caller may see; nil: no
	// filter (tests of other rules).
	Access *access.Policy
	// Projects makes sure the project a pipeline is created in (or moved
	// to) exists and that the caller is its maintainer; nil: not checked.
	Projects Projects
	// Clock is time.Now unless a test fixes it.
	Clock  func() time.Time
	Logger *slog.Logger
}

// Projects is what the service needs of the projects service.
type Projects interface {
	Ensure(ctx context.Context, field, id string, need access.Role, action string) error
}

// Service applies the pipeline rules. It is safe for concurrent use.
type Service struct {
	o   Options
	log *slog.Logger
}

// New returns a Service.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.CronMinInterval <= 0 {
		o.CronMinInterval = cron.DefaultMinInterval
	}
	s := &Service{o: o, log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

func (s *Service) now() time.Time { return s.o.Clock() }

// Fields are a pipeline's editable fields as a client sends them. On an
// update only the fields present are changed.
type Fields struct {
	ProjectID        string         `json:"projectId"`
	Name             string         `json:"name"`
	Description      string         `json:"description"`
	RepoURL          string         `json:"repoUrl"`
	DefaultBranch    string         `json:"defaultBranch"`
	PipelineFilePath string         `json:"pipelineFilePath"`
	SaveMode         string         `json:"saveMode"`
	PRTargetBranch   string         `json:"prTargetBranch"`
	Metadata         map[string]any `json:"metadata"`
	// WebhookSecret sets the pipeline's webhook secret (write-only: never
	// shown; reads say whether one is set).
	WebhookSecret string `json:"webhookSecret"`
	// TriggerCronExpression and TriggerTimezone are the pipeline's own cron
	// schedule ("": none; an empty zone is UTC).
	TriggerCronExpression string `json:"triggerCronExpression"`
	TriggerTimezone       string `json:"triggerTimezone"`
	// TriggerCronTimezone is the seed's other spelling of triggerTimezone,
	// accepted on input.
	TriggerCronTimezone string `json:"triggerCronTimezone"`
	// CredentialID names the source-code credential the server reads and
	// writes repoUrl with ("" none).
	CredentialID string `json:"credentialId"`
	// EventSinks are the pipeline's own CDEvents sinks (http(s) URLs).
	EventSinks []string `json:"eventSinks"`
	// TriggerWebhook says whether webhook deliveries start runs (seed
	// 001's flag; default true).
	TriggerWebhook *bool `json:"triggerWebhook"`
	// ForkPullRequests says what runs of pull requests from forks get:
	// "withhold" (default: no secrets, no credentials), "approve" (a
	// maintainer's approval of the run gives them) or "allow".
	ForkPullRequests string `json:"forkPullRequests"`
}

// CreateRequest adds what only a creation takes: who created it and an
// optional first version of the definition (a JSON object, in Format).
type CreateRequest struct {
	Fields
	CreatedBy string          `json:"createdBy"`
	Spec      json.RawMessage `json:"spec"`
	Format    string          `json:"format"`
}

// Present tells which fields a request carries (by their JSON names).
type Present func(field string) bool

// All is Present for a creation: every field counts.
func All(string) bool { return true }

// foldZoneAlias folds triggerCronTimezone into triggerTimezone; both with
// different values is bad input. It returns the presence with
// triggerTimezone marked when the alias was sent.
func foldZoneAlias(f *Fields, present Present) (Present, error) {
	if !present("triggerCronTimezone") {
		return present, nil
	}
	if present("triggerTimezone") && f.TriggerTimezone != f.TriggerCronTimezone {
		return nil, runnel.Invalidf("body.triggerCronTimezone: is another name of body.triggerTimezone, and the two differ (%q, %q); send only triggerTimezone",
			f.TriggerCronTimezone, f.TriggerTimezone)
	}
	f.TriggerTimezone = f.TriggerCronTimezone
	return func(field string) bool { return field == "triggerTimezone" || present(field) }, nil
}

// CheckFields validates the fields present (all of them on create).
func CheckFields(f *Fields, present Present) error {
	checks := []struct {
		field string
		check func() error
	}{
		{"projectId", func() error { return check.ProjectID("body.projectId", f.ProjectID) }},
		{"name", func() error { return check.Name("body.name", f.Name) }},
		{"description", func() error { return check.Text("body.description", f.Description, 4096, true) }},
		{"repoUrl", func() error { return check.RepoURL("body.repoUrl", f.RepoURL) }},
		{"defaultBranch", func() error { return check.Branch("body.defaultBranch", f.DefaultBranch) }},
		{"pipelineFilePath", func() error { return check.RepoPath("body.pipelineFilePath", f.PipelineFilePath) }},
		{"saveMode", func() error { return check.Enum("body.saveMode", f.SaveMode, "direct", "pr") }},
		{"prTargetBranch", func() error { return check.Branch("body.prTargetBranch", f.PRTargetBranch) }},
		{"metadata", func() error { return check.Metadata("body.metadata", f.Metadata) }},
		{"triggerCronExpression", func() error {
			return check.Text("body.triggerCronExpression", f.TriggerCronExpression, 200, false)
		}},
		{"triggerTimezone", func() error { return check.Text("body.triggerTimezone", f.TriggerTimezone, 100, false) }},
		{"credentialId", func() error {
			if f.CredentialID == "" {
				return nil
			}
			return check.Text("body.credentialId", f.CredentialID, 100, false)
		}},
		{"eventSinks", func() error { return checkEventSinks("body.eventSinks", f.EventSinks) }},
		{"forkPullRequests", func() error {
			if f.ForkPullRequests == "" {
				return nil
			}
			return check.Enum("body.forkPullRequests", f.ForkPullRequests, ForkModes...)
		}},
	}
	for _, c := range checks {
		if present(c.field) {
			if err := c.check(); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkEventSinks checks a pipeline's CDEvents sinks: at most 10 absolute
// http(s) URLs.
func checkEventSinks(path string, sinks []string) error {
	if len(sinks) > 10 {
		return runnel.Invalidf("%s: at most 10 sinks; got %d", path, len(sinks))
	}
	for i, s := range sinks {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(s) > 2048 {
			return runnel.Invalidf("%s[%d]: want an absolute http(s) URL of at most 2048 characters, e.g. https://events.example.com/cdevents", path, i)
		}
	}
	return nil
}

// checkSaveMode checks what only makes sense together: a pull request needs a
// repository.
func checkSaveMode(p *store.Pipeline) error {
	if p.SaveMode == "pr" && p.RepoURL == "" {
		return runnel.Invalidf("body.saveMode: \"pr\" needs body.repoUrl: the definition is saved by opening a pull request on that repository")
	}
	if p.CredentialID != "" && p.RepoURL == "" {
		return runnel.Invalidf("body.credentialId: needs body.repoUrl: the credential is what the server reads and writes that repository with")
	}
	return nil
}

// checkCredential checks that the pipeline's credential exists and may be
// used by the pipeline's project.
func (s *Service) checkCredential(ctx context.Context, p *store.Pipeline) error {
	if p.CredentialID == "" {
		return nil
	}
	c, err := s.o.Store.GetCredential(ctx, p.CredentialID)
	if errors.Is(err, runnel.ErrNotFound) {
		return runnel.Invalidf("body.credentialId: no credential %q (see GET /api/v1/credentials)", p.CredentialID)
	}
	if err != nil {
		return fmt.Errorf("check credential %s: %w", p.CredentialID, err)
	}
	if c.OwnerID != "" {
		// A connected account is personal: only its owner puts it to work.
		if who, ok := runnel.PrincipalFrom(ctx); ok && !who.SiteAdmin() && who.UserID != c.OwnerID {
			return runnel.Invalidf("body.credentialId: no credential %q (see GET /api/v1/credentials)", p.CredentialID)
		}
	}
	if c.ProjectID != "" && c.ProjectID != p.ProjectID {
		return runnel.Invalidf("body.credentialId: credential %s is limited to project %q; this pipeline is in project %q",
			c.ID, c.ProjectID, p.ProjectID)
	}
	return nil
}

// checkCron validates the pipeline's flat cron fields as they will be
// stored: a known zone, an expression the cron service can run, ticking no
// more often than the server's minimum interval.
func (s *Service) checkCron(p *store.Pipeline) error {
	if p.TriggerTimezone != "" {
		if _, err := cron.LoadLocation(p.TriggerTimezone); err != nil {
			return runnel.Invalidf("body.triggerTimezone: %v", err)
		}
	}
	if p.TriggerCronExpression == "" {
		return nil
	}
	sched, err := cron.Parse(p.TriggerCronExpression, p.TriggerTimezone)
	if err != nil {
		return runnel.Invalidf("body.triggerCronExpression: %v", err)
	}
	if err := sched.CheckMinInterval(s.now(), s.o.CronMinInterval); err != nil {
		return runnel.Invalidf("body.triggerCronExpression: %v", err)
	}
	return nil
}

// NextStart is the pipeline's next cron tick over the head definition's
// cron triggers and its flat fields; nil when it has none.
func (s *Service) NextStart(ctx context.Context, p *store.Pipeline) (*time.Time, error) {
	var triggers []spec.Trigger
	if p.HeadVersion > 0 {
		sv, err := s.o.Store.GetSpec(ctx, p.ID, 0)
		if err != nil && !errors.Is(err, runnel.ErrNotFound) {
			return nil, fmt.Errorf("get head spec of pipeline %s: %w", p.ID, err)
		}
		if sv != nil {
			// A spec that no longer decodes has no schedule the service
			// could follow either.
			triggers, _ = cron.SpecTriggers(sv.Spec)
		}
	}
	entries, _ := cron.PipelineSchedules(p, triggers)
	next := cron.NextStart(entries, s.now())
	if next.IsZero() {
		return nil, nil
	}
	return &next, nil
}

// Create checks and stores a new pipeline, with its first definition and
// webhook secret when the request has them; present says which fields the
// request carries, caller who asks (createdBy when the request names
// nobody). Nothing is left behind when any part fails.
func (s *Service) Create(ctx context.Context, req *CreateRequest, present Present, caller string) (*store.Pipeline, error) {
	if req.SaveMode == "" {
		req.SaveMode = "direct"
	}
	present, err := foldZoneAlias(&req.Fields, present)
	if err != nil {
		return nil, err
	}
	if err := CheckFields(&req.Fields, All); err != nil {
		return nil, err
	}
	if err := check.Principal("body.createdBy", req.CreatedBy); err != nil {
		return nil, err
	}
	if err := s.checkWebhookSecretField(present("webhookSecret"), req.WebhookSecret); err != nil {
		return nil, err
	}
	if s.o.Projects != nil {
		if err := s.o.Projects.Ensure(ctx, "body.projectId", req.ProjectID, access.Maintainer, "creating a pipeline in it"); err != nil {
			return nil, err
		}
	}
	now := s.now().UTC()
	p := &store.Pipeline{
		ID:               runnel.NewID("pl"),
		ProjectID:        req.ProjectID,
		Name:             req.Name,
		Description:      req.Description,
		RepoURL:          req.RepoURL,
		DefaultBranch:    req.DefaultBranch,
		PipelineFilePath: req.PipelineFilePath,
		SaveMode:         req.SaveMode,
		PRTargetBranch:   req.PRTargetBranch,
		Metadata:         req.Metadata,
		CreatedBy:        cmp.Or(req.CreatedBy, caller),
		CreatorID:        creatorOf(ctx),
		CreatedAt:        now,
		UpdatedAt:        now,

		TriggerCronExpression: req.TriggerCronExpression,
		TriggerTimezone:       req.TriggerTimezone,
		CredentialID:          req.CredentialID,
		EventSinks:            req.EventSinks,
		ForkPullRequests:      forkMode(req.ForkPullRequests),
	}
	if req.TriggerWebhook != nil {
		p.WebhookDisabled = !*req.TriggerWebhook
	}
	if p.Metadata == nil {
		p.Metadata = map[string]any{}
	}
	if err := checkSaveMode(p); err != nil {
		return nil, err
	}
	if err := s.checkCredential(ctx, p); err != nil {
		return nil, err
	}
	if err := s.checkCron(p); err != nil {
		return nil, err
	}

	// An inline definition is checked before anything is stored: an invalid
	// one must not leave a pipeline behind.
	var first *store.SpecVersion
	if present("spec") && !IsNull(req.Spec) {
		format, err := CheckFormat(req.Format)
		if err != nil {
			return nil, err
		}
		if err := CheckSpecObject(req.Spec); err != nil {
			return nil, err
		}
		canonical, sha, err := s.Parse(trimSpace(req.Spec), "body.spec")
		if err != nil {
			return nil, err
		}
		first = &store.SpecVersion{
			Spec: canonical, CommitSHA: sha, Format: format, CommitMessage: "create pipeline",
			Editor: p.CreatedBy, RequestID: runnel.NewID("create"), CreatedAt: now,
		}
	} else if present("format") {
		return nil, runnel.Invalidf("body.format: only meaningful with body.spec")
	}

	if err := s.o.Store.CreatePipeline(ctx, p); err != nil {
		if errors.Is(err, runnel.ErrConflict) {
			return nil, runnel.Errorf(runnel.ErrConflict, "body.name: project %q already has a pipeline named %q", p.ProjectID, p.Name)
		}
		return nil, fmt.Errorf("create pipeline: %w", err)
	}
	if first != nil {
		first.PipelineID = p.ID
		if _, _, err := s.o.Store.SaveSpec(ctx, first, ""); err != nil {
			// The store has no create-with-spec transaction: undo the creation
			// so that a failed request leaves nothing behind, even if the client
			// has gone.
			s.undoCreate(ctx, p.ID, "its first spec")
			return nil, fmt.Errorf("save the first spec of pipeline %s: %w", p.ID, err)
		}
	}
	if present("webhookSecret") {
		if _, err := s.SetWebhookSecret(ctx, p.ID, req.WebhookSecret); err != nil {
			s.undoCreate(ctx, p.ID, "its webhook secret")
			return nil, err
		}
	}
	created, err := s.o.Store.GetPipeline(ctx, p.ID)
	if err != nil {
		return nil, fmt.Errorf("read back pipeline %s: %w", p.ID, err)
	}
	return created, nil
}

// undoCreate removes a pipeline whose creation failed after it was stored.
func (s *Service) undoCreate(ctx context.Context, id, what string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.o.Store.DeletePipeline(ctx, id); err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "cannot remove a pipeline whose "+what+" failed to save",
			slog.String("pipeline_id", id), slog.Any("error", err))
	}
}

// Get returns a pipeline; a missing one is ErrNotFound naming it.
func (s *Service) Get(ctx context.Context, id string) (*store.Pipeline, error) {
	p, err := s.o.Store.GetPipeline(ctx, id)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil, runnel.Errorf(runnel.ErrNotFound, "pipeline %s not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get pipeline %s: %w", id, err)
	}
	return p, nil
}

// List lists pipelines; f.ProjectID (when filtered on) and f.Search are
// checked as query parameters.
func (s *Service) List(ctx context.Context, f store.PipelineFilter, byProject bool) ([]*store.Pipeline, int, error) {
	if byProject {
		if err := check.ProjectID("query parameter projectId", f.ProjectID); err != nil {
			return nil, 0, err
		}
	}
	if err := check.Text("query parameter name", f.Search, 100, false); err != nil {
		return nil, 0, err
	}
	if s.o.Access != nil {
		v, err := s.o.Access.ViewOf(ctx)
		if err != nil {
			return nil, 0, err
		}
		if !v.All {
			f.Within = v.Projects()
		}
	}
	items, total, err := s.o.Store.ListPipelines(ctx, f)
	if err != nil {
		return nil, 0, fmt.Errorf("list pipelines: %w", err)
	}
	return items, total, nil
}

// Update changes the fields present of pipeline id.
func (s *Service) Update(ctx context.Context, id string, f *Fields, present Present) (*store.Pipeline, error) {
	present, err := foldZoneAlias(f, present)
	if err != nil {
		return nil, err
	}
	if err := CheckFields(f, present); err != nil {
		return nil, err
	}
	if err := s.checkWebhookSecretField(present("webhookSecret"), f.WebhookSecret); err != nil {
		return nil, err
	}
	p, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	set := func(field string, dst *string, v string) {
		if present(field) {
			*dst = v
		}
	}
	if present("projectId") && f.ProjectID != p.ProjectID && s.o.Projects != nil {
		if err := s.o.Projects.Ensure(ctx, "body.projectId", f.ProjectID, access.Maintainer, "moving a pipeline into it"); err != nil {
			return nil, err
		}
	}
	set("projectId", &p.ProjectID, f.ProjectID)
	set("name", &p.Name, f.Name)
	set("description", &p.Description, f.Description)
	set("repoUrl", &p.RepoURL, f.RepoURL)
	set("defaultBranch", &p.DefaultBranch, f.DefaultBranch)
	set("pipelineFilePath", &p.PipelineFilePath, f.PipelineFilePath)
	set("saveMode", &p.SaveMode, f.SaveMode)
	set("prTargetBranch", &p.PRTargetBranch, f.PRTargetBranch)
	set("triggerCronExpression", &p.TriggerCronExpression, f.TriggerCronExpression)
	set("triggerTimezone", &p.TriggerTimezone, f.TriggerTimezone)
	set("credentialId", &p.CredentialID, f.CredentialID)
	if present("eventSinks") {
		p.EventSinks = f.EventSinks
	}
	if present("triggerWebhook") {
		if f.TriggerWebhook == nil {
			return nil, runnel.Invalidf("body.triggerWebhook: want true or false, not null")
		}
		p.WebhookDisabled = !*f.TriggerWebhook
	}
	if present("forkPullRequests") {
		p.ForkPullRequests = forkMode(f.ForkPullRequests)
	}
	if present("metadata") {
		p.Metadata = f.Metadata
		if p.Metadata == nil {
			p.Metadata = map[string]any{}
		}
	}
	if err := checkSaveMode(p); err != nil {
		return nil, err
	}
	if present("credentialId") || present("projectId") {
		if err := s.checkCredential(ctx, p); err != nil {
			return nil, err
		}
	}
	// The schedule is checked when it is changed: a pipeline saved under a
	// smaller minimum interval can still be renamed.
	if present("triggerCronExpression") || present("triggerTimezone") {
		if err := s.checkCron(p); err != nil {
			return nil, err
		}
	}
	p.UpdatedAt = s.now().UTC()
	if err := s.o.Store.UpdatePipeline(ctx, p); err != nil {
		switch {
		case errors.Is(err, runnel.ErrNotFound):
			return nil, runnel.Errorf(runnel.ErrNotFound, "pipeline %s not found", p.ID)
		case errors.Is(err, runnel.ErrConflict):
			return nil, runnel.Errorf(runnel.ErrConflict, "body.name: project %q already has a pipeline named %q", p.ProjectID, p.Name)
		}
		return nil, fmt.Errorf("update pipeline %s: %w", p.ID, err)
	}
	if present("webhookSecret") {
		if _, err := s.SetWebhookSecret(ctx, p.ID, f.WebhookSecret); err != nil {
			return nil, err
		}
	}
	updated, err := s.o.Store.GetPipeline(ctx, p.ID)
	if err != nil {
		return nil, fmt.Errorf("read back pipeline %s: %w", p.ID, err)
	}
	return updated, nil
}

// Delete removes a pipeline with everything it has; one with an active run
// is a conflict.
func (s *Service) Delete(ctx context.Context, id string) error {
	if err := s.o.Store.DeletePipeline(ctx, id); err != nil {
		switch {
		case errors.Is(err, runnel.ErrNotFound):
			return runnel.Errorf(runnel.ErrNotFound, "pipeline %s not found", id)
		case errors.Is(err, runnel.ErrConflict):
			return runnel.Errorf(runnel.ErrConflict, "pipeline %s has an active run (pending, running or paused); stop it before deleting the pipeline", id)
		}
		return fmt.Errorf("delete pipeline %s: %w", id, err)
	}
	return nil
}

// creatorOf is the id of the user who asks ("" for Runnel's own work).
func creatorOf(ctx context.Context) string {
	c, _ := runnel.PrincipalFrom(ctx)
	return c.UserID
}

// ForkModes are the values of forkPullRequests.
var ForkModes = []string{"withhold", "approve", "allow"}

// forkMode is how a mode is stored ("" for the default, withhold).
func forkMode(v string) string {
	if v == "withhold" {
		return ""
	}
	return v
}

// ForkMode is the stored mode as the API shows it.
func ForkMode(stored string) string {
	if stored == "" {
		return "withhold"
	}
	return stored
}

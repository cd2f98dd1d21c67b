// Package repos is Runnel's side of the forges (seed 001): the
// repositories a connected account reaches, their activation (a Git-backed
// pipeline with a webhook Runnel creates, checks, repairs and removes on the
// forge), and the statuses runs report on their commits, sent from the
// durable outbox.
//
// The forges' APIs are package forge's Host implementations; the accounts'
// tokens come from package signin (renewed before they expire); the
// pipelines are created and removed through the pipeline service, so its
// rules (names, projects, credentials) hold here too.
package repos

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/check"
	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/forge/forges"
	"github.com/runnel-ci/runnel/internal/pipeline"
	"github.com/runnel-ci/runnel/internal/sso"
	"github.com/runnel-ci/runnel/internal/store"
)

// Tokens opens credentials' access tokens (signin.Service: a connected
// account's token is renewed first when it is about to expire).
type Tokens interface {
	AccessToken(ctx context.Context, c *store.Credential) (string, error)
	Provider(ctx context.Context, name string) (sso.Provider, error)
}

// Pipelines is what the service needs of the pipeline service.
type Pipelines interface {
	Create(ctx context.Context, req *pipeline.CreateRequest, present pipeline.Present, caller string) (*store.Pipeline, error)
	Delete(ctx context.Context, id string) error
	SetWebhookSecret(ctx context.Context, pipelineID, secret string) (*store.PipelineWebhook, error)
}

// Opener opens sealed values (the server's keyring): a pipeline's webhook
// secret, reused when its hook is created.
type Opener interface {
	Open(id string, ciphertext []byte, keyID string) ([]byte, error)
}

// Options configure a Service. Store, Tokens and Pipelines are required.
type Options struct {
	Store     store.Store
	Tokens    Tokens
	Pipelines Pipelines
	Opener    Opener
	// ExternalURL is the server's address as forges reach it
	// (--external-url): the webhooks' target and the statuses' links.
	ExternalURL string
	// HC sends the forge API calls (nil: a client that follows no
	// redirect, 30 seconds per call).
	HC *http.Client
	// CacheTTL is how long a page of repositories is kept (default 1m).
	CacheTTL time.Duration
	// StatusContext prefixes commit statuses' contexts (default "runnel").
	StatusContext string
	Clock         func() time.Time
	Logger        *slog.Logger
}

// Service is the forge service; safe for concurrent use.
type Service struct {
	o   Options
	log *slog.Logger

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	page *RepoPage
	at   time.Time
}

// New returns a Service.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = time.Minute
	}
	if o.StatusContext == "" {
		o.StatusContext = "runnel"
	}
	s := &Service{o: o, log: o.Logger, cache: map[string]cached{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

func (s *Service) now() time.Time { return s.o.Clock().UTC() }

// Personal reports whether the caller in ctx may use credential c: a
// connected account only by its owner (site admins and Runnel's own work
// too); hand-made ones are left to the access rules of their routes.
func Personal(ctx context.Context, c *store.Credential) error {
	if c.OwnerID == "" {
		return nil
	}
	p, ok := runnel.PrincipalFrom(ctx)
	if !ok || p.SiteAdmin() || p.UserID == c.OwnerID {
		return nil
	}
	return runnel.Errorf(runnel.ErrNotFound, "credential %s not found", c.ID)
}

// credential reads a credential the caller may use.
func (s *Service) credential(ctx context.Context, id string) (*store.Credential, error) {
	c, err := s.o.Store.GetCredential(ctx, id)
	if err != nil {
		return nil, runnel.About(err, "get", "credential", id)
	}
	if err := Personal(ctx, c); err != nil {
		return nil, err
	}
	if _, err := forges.Host(c.Kind); err != nil {
		return nil, runnel.Invalidf("credential %s is of kind %s: only github, gitlab, gitea and bitbucket credentials reach a forge's repositories", c.Name, c.Kind)
	}
	return c, nil
}

// forgeOf is the credential's forge and the base of its API: a connected
// account's provider says where it is; a hand-made credential's host (or
// the repository URL, when one is known) does.
func (s *Service) forgeOf(ctx context.Context, c *store.Credential, repoURL string) (forge.Host, string, error) {
	h, err := forges.Host(c.Kind)
	if err != nil {
		return nil, "", runnel.Invalidf("%v", err)
	}
	if c.Provider != "" {
		p, err := s.o.Tokens.Provider(ctx, c.Provider)
		if err != nil {
			if errors.Is(err, runnel.ErrNotFound) {
				return nil, "", runnel.Errorf(runnel.ErrUnavailable, "credential %s was connected through provider %s, which is gone: connect the account again", c.Name, c.Provider)
			}
			return nil, "", err
		}
		return h, p.APIBase(), nil
	}
	if repoURL != "" {
		base, err := forges.HostBase(c.Kind, repoURL)
		if err != nil {
			return nil, "", runnel.Invalidf("repoUrl: %v", err)
		}
		return h, base, nil
	}
	host := c.Host
	if host == "" {
		return nil, "", runnel.Invalidf("credential %s has no host: set it to the forge's host name", c.Name)
	}
	if c.Kind == forge.KindGitHub && host == "github.com" {
		return h, "https://api.github.com", nil
	}
	if c.Kind == forge.KindBitbucket && host == "bitbucket.org" {
		return h, "https://api.bitbucket.org/2.0", nil
	}
	return h, h.APIBase("https", host), nil
}

// conn is how to call the forge as credential c.
func (s *Service) conn(ctx context.Context, c *store.Credential, base string) (forge.Conn, error) {
	tok, err := s.o.Tokens.AccessToken(ctx, c)
	if err != nil {
		return forge.Conn{}, err
	}
	return forge.Conn{Base: base, Token: tok, HC: s.o.HC}, nil
}

// Forge errors become Runnel's, naming the forge: a refused token is the
// account's problem (connect it again), a rate limit says when to retry, a
// missing permission what is missing.
func forgeError(kind, what string, err error) error {
	var fe *forge.Error
	switch {
	case errors.Is(err, forge.ErrTokenRejected):
		return runnel.Errorf(runnel.ErrUpstream, "%s refused the account's token while %s (expired or revoked): connect the account again or replace the credential's token", kind, what)
	case errors.Is(err, forge.ErrRateLimited):
		wait := ""
		if errors.As(err, &fe) && fe.RetryAfter > 0 {
			wait = fmt.Sprintf("; retry in %s", fe.RetryAfter.Round(time.Second))
		}
		return runnel.Errorf(runnel.ErrUnavailable, "%s's rate limit is used up while %s%s", kind, what, wait)
	case errors.Is(err, forge.ErrGone):
		return runnel.Errorf(runnel.ErrNotFound, "%s: not found while %s (or the account cannot see it)", kind, what)
	case errors.Is(err, forge.ErrForbidden):
		return runnel.Errorf(runnel.ErrForbidden, "%s refused %s: the account lacks a permission or the token a scope (%v)", kind, what, err)
	case errors.Is(err, context.DeadlineExceeded):
		return runnel.Errorf(runnel.ErrUpstream, "%s did not answer in time while %s", kind, what)
	case errors.As(err, &fe):
		return runnel.Errorf(runnel.ErrUpstream, "%s failed while %s: %v", kind, what, err)
	}
	var re *runnel.Error
	if errors.As(err, &re) {
		return err
	}
	return runnel.Errorf(runnel.ErrUpstream, "%s could not be reached while %s: %v", kind, what, err)
}

// RepoPage is one page of a credential's repositories.
type RepoPage struct {
	Repos []forge.Repo
	// Next is the next page (0: none).
	Next int
	// FetchedAt is when the forge was asked (a cached page is older).
	FetchedAt time.Time
}

// Repositories lists the repositories credential credID reaches, a page at a
// time, from a cache of CacheTTL unless refresh.
func (s *Service) Repositories(ctx context.Context, credID string, o forge.ListOptions, refresh bool) (*RepoPage, error) {
	c, err := s.credential(ctx, credID)
	if err != nil {
		return nil, err
	}
	if o.Page <= 0 {
		o.Page = 1
	}
	key := fmt.Sprintf("%s\x00%s\x00%d\x00%d\x00%d", c.ID, o.Search, o.Page, o.PerPage, c.UpdatedAt.UnixNano())
	if !refresh {
		s.mu.Lock()
		e, ok := s.cache[key]
		s.mu.Unlock()
		if ok && s.now().Sub(e.at) < s.o.CacheTTL {
			return e.page, nil
		}
	}
	h, base, err := s.forgeOf(ctx, c, "")
	if err != nil {
		return nil, err
	}
	cn, err := s.conn(ctx, c, base)
	if err != nil {
		return nil, err
	}
	got, err := h.Repos(ctx, cn, o)
	if err != nil {
		return nil, forgeError(h.Name(), "listing the account's repositories", err)
	}
	page := &RepoPage{Repos: got.Repos, Next: got.Next, FetchedAt: s.now()}
	if page.Repos == nil {
		page.Repos = []forge.Repo{}
	}
	s.mu.Lock()
	for k, e := range s.cache {
		if s.now().Sub(e.at) >= s.o.CacheTTL {
			delete(s.cache, k)
		}
	}
	s.cache[key] = cached{page: page, at: page.FetchedAt}
	s.mu.Unlock()
	return page, nil
}

// ActivateRequest is POST /api/v1/repositories/activate.
type ActivateRequest struct {
	CredentialID string `json:"credentialId"`
	FullName     string `json:"fullName"`
	ProjectID    string `json:"projectId"`
	// Name of the pipeline (default: the repository's name).
	Name string `json:"name"`
	// PipelineFilePath is the definition's path in the repository
	// (default .runnel/pipeline.yaml).
	PipelineFilePath string `json:"pipelineFilePath"`
	StatusOptions
}

// StatusOptions say how runs report on commits: the statuses' context
// ("" runnel/<pipeline>) and whether each job reports its own
// (<context>/<job>) besides the run.
type StatusOptions struct {
	StatusContext *string `json:"statusContext"`
	JobStatuses   *bool   `json:"jobStatuses"`
}

// check validates the options present.
func (o StatusOptions) check() error {
	if o.StatusContext != nil {
		if err := check.Text("body.statusContext", *o.StatusContext, 100, false); err != nil {
			return err
		}
		if strings.ContainsAny(*o.StatusContext, " \t") {
			return runnel.Invalidf("body.statusContext: no spaces (forges show it as one word, e.g. ci/runnel)")
		}
	}
	return nil
}

// apply sets the options present on b.
func (o StatusOptions) apply(b *store.RepoBinding) {
	if o.StatusContext != nil {
		b.StatusContext = *o.StatusContext
	}
	if o.JobStatuses != nil {
		b.JobStatuses = *o.JobStatuses
	}
}

var pipelineName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Activate makes a pipeline of a repository: a Git-backed pipeline reading
// its definition from the repository, a fresh webhook secret, and the hook on
// the forge for push, tag and pull request events. It needs admin
// permission on the repository (to create hooks) and the maintainer role in
// the project. Nothing is left behind when a step fails.
func (s *Service) Activate(ctx context.Context, req ActivateRequest) (*store.Pipeline, *store.RepoBinding, error) {
	if req.CredentialID == "" {
		return nil, nil, runnel.Invalidf("body.credentialId: required (a connected account or a forge credential; see GET /api/v1/credentials)")
	}
	if req.FullName == "" || !strings.Contains(req.FullName, "/") {
		return nil, nil, runnel.Invalidf("body.fullName: required, the repository's full name as the forge lists it (owner/name)")
	}
	if req.ProjectID == "" {
		return nil, nil, runnel.Invalidf("body.projectId: required (the project the pipeline goes in)")
	}
	if err := req.StatusOptions.check(); err != nil {
		return nil, nil, err
	}
	c, err := s.credential(ctx, req.CredentialID)
	if err != nil {
		return nil, nil, err
	}
	h, base, err := s.forgeOf(ctx, c, "")
	if err != nil {
		return nil, nil, err
	}
	cn, err := s.conn(ctx, c, base)
	if err != nil {
		return nil, nil, err
	}
	repo, err := h.Repo(ctx, cn, req.FullName)
	if err != nil {
		return nil, nil, forgeError(h.Name(), "reading repository "+req.FullName, err)
	}
	if err := needAdmin(h.Name(), c, repo); err != nil {
		return nil, nil, err
	}
	name := req.Name
	if name == "" {
		name = strings.Trim(pipelineName.ReplaceAllString(path.Base(repo.FullName), "-"), "-")
	}
	creq := &pipeline.CreateRequest{Fields: pipeline.Fields{ProjectID: req.ProjectID, Name: name, RepoURL: repo.CloneURL,
		DefaultBranch: repo.DefaultBranch, PipelineFilePath: cmp.Or(req.PipelineFilePath, ".runnel/pipeline.yaml"),
		CredentialID: c.ID, Description: "Activated from " + h.Name() + " repository " + repo.FullName}}
	caller := ""
	if p, ok := runnel.PrincipalFrom(ctx); ok {
		caller = p.Subject
	}
	p, err := s.o.Pipelines.Create(ctx, creq, func(f string) bool { return f != "spec" && f != "format" && f != "webhookSecret" }, caller)
	if err != nil {
		return nil, nil, err
	}
	b := &store.RepoBinding{PipelineID: p.ID, Provider: c.Provider, Kind: h.Name(), APIBase: base, FullName: repo.FullName}
	req.StatusOptions.apply(b)
	if err := s.hookUp(ctx, h, cn, p, b, ""); err != nil {
		s.undo(ctx, p.ID)
		return nil, nil, err
	}
	return p, b, nil
}

// needAdmin refuses a repository the account cannot create hooks on.
func needAdmin(kind string, c *store.Credential, r *forge.Repo) error {
	if r.Permissions.Admin {
		return nil
	}
	have := "read"
	if r.Permissions.Push {
		have = "write"
	}
	who := cmp.Or(c.LoginName, c.Username, c.Name)
	return runnel.Errorf(runnel.ErrForbidden, "activating %s needs the admin permission on it at %s (to create its webhook); account %s has %s permission only",
		r.FullName, kind, who, have)
}

// undo removes a pipeline whose activation failed.
func (s *Service) undo(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.o.Pipelines.Delete(ctx, id); err != nil {
		s.log.Error("remove a pipeline whose activation failed", "pipeline_id", id, "err", err)
	}
}

// HookURL is where the forge delivers a pipeline's events.
func (s *Service) HookURL(kind, pipelineID string) string {
	return strings.TrimRight(s.o.ExternalURL, "/") + "/api/v1/webhooks/" + kind + "/" + pipelineID
}

// hookUp stores b and creates the pipeline's hook on the forge with a
// webhook secret: secret when given, else the pipeline's current one, else
// a new one.
func (s *Service) hookUp(ctx context.Context, h forge.Host, cn forge.Conn, p *store.Pipeline, b *store.RepoBinding, secret string) error {
	if s.o.ExternalURL == "" {
		return runnel.Errorf(runnel.ErrUnavailable, "the server has no --external-url: a forge needs it to deliver webhooks to this server")
	}
	if secret == "" {
		secret = s.currentSecret(ctx, p.ID)
	}
	if secret == "" {
		buf := make([]byte, 32)
		_, _ = rand.Read(buf)
		secret = hex.EncodeToString(buf)
		if _, err := s.o.Pipelines.SetWebhookSecret(ctx, p.ID, secret); err != nil {
			return err
		}
	}
	now := s.now()
	hook, err := h.CreateHook(ctx, cn, b.FullName, forge.HookSpec{URL: s.HookURL(h.Name(), p.ID), Secret: secret})
	if err != nil {
		return forgeError(h.Name(), "creating the webhook of "+b.FullName, err)
	}
	b.HookID, b.HookState, b.HookError, b.HookCheckedAt = hook.ID, HookActive, "", &now
	if err := s.o.Store.PutRepoBinding(ctx, b); err != nil {
		// The hook exists but is not recorded: remove it so it is not orphaned.
		_ = h.DeleteHook(context.WithoutCancel(ctx), cn, b.FullName, hook.ID)
		return fmt.Errorf("record the repository of pipeline %s: %w", p.ID, err)
	}
	return nil
}

// currentSecret is the pipeline's webhook secret in clear ("" none).
func (s *Service) currentSecret(ctx context.Context, pipelineID string) string {
	if s.o.Opener == nil {
		return ""
	}
	w, err := s.o.Store.GetWebhookSecret(ctx, pipelineID)
	if err != nil {
		return ""
	}
	v, err := s.o.Opener.Open(w.SealID(), w.Ciphertext, w.KeyID)
	if err != nil {
		return ""
	}
	return string(v)
}

// Hook states.
const (
	HookActive  = "active"
	HookMissing = "missing"
)

// binding is the pipeline's forge, the credential it works with and a
// connection; for a pipeline not activated yet, one derived from its
// repository URL and credential (not stored).
func (s *Service) binding(ctx context.Context, p *store.Pipeline) (*store.RepoBinding, forge.Host, forge.Conn, error) {
	if p.RepoURL == "" && p.CredentialID == "" {
		// An image repository's pipeline (seed 002): its source says
		// which forge repository and credential.
		if ir, err := s.o.Store.ImageRepositoryByPipeline(ctx, p.ID); err == nil {
			return s.imageBinding(ctx, p, ir)
		}
	}
	if p.CredentialID == "" {
		return nil, nil, forge.Conn{}, runnel.Invalidf("pipeline %s has no credentialId: the server manages a repository's webhook with the credential of a forge account (github, gitlab, gitea, bitbucket)", p.Name)
	}
	c, err := s.o.Store.GetCredential(ctx, p.CredentialID)
	if err != nil {
		return nil, nil, forge.Conn{}, runnel.About(err, "get", "credential", p.CredentialID)
	}
	b, err := s.o.Store.GetRepoBinding(ctx, p.ID)
	switch {
	case errors.Is(err, runnel.ErrNotFound):
		if p.RepoURL == "" {
			return nil, nil, forge.Conn{}, runnel.Invalidf("pipeline %s has no repoUrl: only a pipeline of a forge repository has a webhook to manage", p.Name)
		}
		if _, err := forges.Host(c.Kind); err != nil {
			return nil, nil, forge.Conn{}, runnel.Invalidf("pipeline %s: credential %s is of kind %s: %v", p.Name, c.Name, c.Kind, err)
		}
		_, full, err := forge.RepoPath(p.RepoURL)
		if err != nil {
			return nil, nil, forge.Conn{}, runnel.Invalidf("pipeline %s: repoUrl: %v", p.Name, err)
		}
		repoURL := p.RepoURL
		if c.Provider != "" {
			repoURL = ""
		}
		h, base, err := s.forgeOf(ctx, c, repoURL)
		if err != nil {
			return nil, nil, forge.Conn{}, err
		}
		b = &store.RepoBinding{PipelineID: p.ID, Provider: c.Provider, Kind: h.Name(), APIBase: base, FullName: full}
	case err != nil:
		return nil, nil, forge.Conn{}, err
	}
	h, err := forges.Host(b.Kind)
	if err != nil {
		return nil, nil, forge.Conn{}, err
	}
	cn, err := s.conn(ctx, c, b.APIBase)
	if err != nil {
		return nil, nil, forge.Conn{}, err
	}
	return b, h, cn, nil
}

func (s *Service) pipeline(ctx context.Context, id string) (*store.Pipeline, error) {
	p, err := s.o.Store.GetPipeline(ctx, id)
	return p, runnel.About(err, "get", "pipeline", id)
}

// ActivatePipeline is seed 001's activate action: the pipeline's webhook is
// created on its forge when it has none (or lost it), and cron and webhook
// runs start again.
func (s *Service) ActivatePipeline(ctx context.Context, id string, o StatusOptions) (*store.Pipeline, *store.RepoBinding, error) {
	if err := o.check(); err != nil {
		return nil, nil, err
	}
	p, err := s.pipeline(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	b, err := s.Repair(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if o.StatusContext != nil || o.JobStatuses != nil {
		o.apply(b)
		b.UpdatedAt = s.now()
		if err := s.o.Store.PutRepoBinding(ctx, b); err != nil {
			return nil, nil, err
		}
	}
	if p.Deactivated {
		p.Deactivated = false
		p.UpdatedAt = s.now()
		if err := s.o.Store.UpdatePipeline(ctx, p); err != nil {
			return nil, nil, err
		}
	}
	return p, b, nil
}

// DeactivatePipeline is seed 001's deactivate action: the hook is removed
// from the forge and neither cron nor webhook deliveries start runs; the
// history stays and manual runs still start. A forge that cannot be reached
// leaves the hook recorded (with the error) for a later deactivate or
// delete to remove; the pipeline is deactivated all the same.
func (s *Service) DeactivatePipeline(ctx context.Context, id string) (*store.Pipeline, *store.RepoBinding, error) {
	p, err := s.pipeline(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	p.Deactivated = true
	p.UpdatedAt = s.now()
	if err := s.o.Store.UpdatePipeline(ctx, p); err != nil {
		return nil, nil, err
	}
	b, err := s.unhook(ctx, p)
	return p, b, err
}

// unhook removes the pipeline's hook from its forge, if it has one.
func (s *Service) unhook(ctx context.Context, p *store.Pipeline) (*store.RepoBinding, error) {
	b, err := s.o.Store.GetRepoBinding(ctx, p.ID)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if b.HookID == "" {
		return b, nil
	}
	_, h, cn, err := s.binding(ctx, p)
	if err == nil {
		err = h.DeleteHook(ctx, cn, b.FullName, b.HookID)
		if err != nil {
			err = forgeError(h.Name(), "removing the webhook of "+b.FullName, err)
		}
	}
	now := s.now()
	b.HookCheckedAt = &now
	if err != nil {
		b.HookError = err.Error()
		_ = s.o.Store.PutRepoBinding(ctx, b)
		return b, err
	}
	b.HookID, b.HookState, b.HookError = "", "", ""
	return b, s.o.Store.PutRepoBinding(ctx, b)
}

// Repair makes sure the pipeline's hook exists on the forge: one deleted
// there by hand (or never made) is created again. The binding comes back
// as it now is.
func (s *Service) Repair(ctx context.Context, id string) (*store.RepoBinding, error) {
	p, err := s.pipeline(ctx, id)
	if err != nil {
		return nil, err
	}
	b, h, cn, err := s.binding(ctx, p)
	if err != nil {
		return nil, err
	}
	if b.HookID != "" {
		_, err := h.Hook(ctx, cn, b.FullName, b.HookID)
		switch {
		case err == nil:
			now := s.now()
			b.HookState, b.HookError, b.HookCheckedAt = HookActive, "", &now
			return b, s.o.Store.PutRepoBinding(ctx, b)
		case !errors.Is(err, forge.ErrGone):
			return nil, forgeError(h.Name(), "reading the webhook of "+b.FullName, err)
		}
	}
	repo, err := h.Repo(ctx, cn, b.FullName)
	if err != nil {
		return nil, forgeError(h.Name(), "reading repository "+b.FullName, err)
	}
	c, err := s.credentialOf(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := needAdmin(h.Name(), c, repo); err != nil {
		return nil, err
	}
	if err := s.hookUp(ctx, h, cn, p, b, ""); err != nil {
		return nil, err
	}
	return b, nil
}

// CheckHook asks the forge whether the pipeline's hook still exists and
// records the answer: a hook deleted at the forge shows as "missing".
func (s *Service) CheckHook(ctx context.Context, id string) (*store.RepoBinding, error) {
	p, err := s.pipeline(ctx, id)
	if err != nil {
		return nil, err
	}
	b, err := s.o.Store.GetRepoBinding(ctx, id)
	if err != nil {
		return nil, runnel.About(err, "get", "repository of pipeline", id)
	}
	if b.HookID == "" {
		return b, nil
	}
	_, h, cn, err := s.binding(ctx, p)
	if err == nil {
		_, err = h.Hook(ctx, cn, b.FullName, b.HookID)
	}
	now := s.now()
	b.HookCheckedAt = &now
	switch {
	case err == nil:
		b.HookState, b.HookError = HookActive, ""
	case errors.Is(err, forge.ErrGone):
		b.HookState, b.HookError = HookMissing, "the webhook was deleted at the forge; repair recreates it"
	default:
		b.HookError = forgeError(b.Kind, "reading the webhook of "+b.FullName, err).Error()
	}
	return b, s.o.Store.PutRepoBinding(ctx, b)
}

// Unhook removes a pipeline's hook from its forge before the pipeline is
// deleted. It fails when the forge cannot be reached, so that no hook is
// orphaned silently; force deletes anyway (the error is logged).
func (s *Service) Unhook(ctx context.Context, id string) error {
	p, err := s.pipeline(ctx, id)
	if err != nil {
		return err
	}
	_, err = s.unhook(ctx, p)
	return err
}

// Binding returns a pipeline's forge repository (ErrNotFound: none).
func (s *Service) Binding(ctx context.Context, id string) (*store.RepoBinding, error) {
	return s.o.Store.GetRepoBinding(ctx, id)
}

func forgeHost(kind string) (forge.Host, error) { return forges.Host(kind) }

// imageBinding is the binding of an image repository's pipeline: the forge
// repository of its source, with its credential.
func (s *Service) imageBinding(ctx context.Context, p *store.Pipeline, ir *store.ImageRepository) (*store.RepoBinding, forge.Host, forge.Conn, error) {
	src := ir.Source
	kind := strings.ToLower(src.Client)
	if src.CredentialID == "" {
		return nil, nil, forge.Conn{}, runnel.Invalidf("image repository %s/%s has no code_repo_credential: the server manages its webhook with a forge account's credential", ir.Namespace, ir.Name)
	}
	h, err := forges.Host(kind)
	if err != nil {
		return nil, nil, forge.Conn{}, runnel.Invalidf("image repository %s/%s: its source client %s has no webhooks Runnel can manage", ir.Namespace, ir.Name, src.Client)
	}
	c, err := s.o.Store.GetCredential(ctx, src.CredentialID)
	if err != nil {
		return nil, nil, forge.Conn{}, runnel.About(err, "get", "credential", src.CredentialID)
	}
	b, err := s.o.Store.GetRepoBinding(ctx, p.ID)
	if errors.Is(err, runnel.ErrNotFound) {
		cc := *c
		if src.Host != "" && cc.Provider == "" {
			cc.Host = src.Host
		}
		_, base, err := s.forgeOf(ctx, &cc, "")
		if err != nil {
			return nil, nil, forge.Conn{}, err
		}
		b = &store.RepoBinding{PipelineID: p.ID, Provider: c.Provider, Kind: kind, APIBase: base, FullName: src.Namespace + "/" + src.Name}
	} else if err != nil {
		return nil, nil, forge.Conn{}, err
	}
	cn, err := s.conn(ctx, c, b.APIBase)
	if err != nil {
		return nil, nil, forge.Conn{}, err
	}
	return b, h, cn, nil
}

// credentialOf is the credential a pipeline's forge calls use: its own, or
// its image repository's.
func (s *Service) credentialOf(ctx context.Context, p *store.Pipeline) (*store.Credential, error) {
	id := p.CredentialID
	if id == "" {
		if ir, err := s.o.Store.ImageRepositoryByPipeline(ctx, p.ID); err == nil {
			id = ir.Source.CredentialID
		}
	}
	if id == "" {
		return nil, runnel.Invalidf("pipeline %s has no credential", p.Name)
	}
	c, err := s.o.Store.GetCredential(ctx, id)
	return c, runnel.About(err, "get", "credential", id)
}

// CheckHooks asks the forges whether each activated pipeline's hook still
// exists (CheckHook for each), so that a hook deleted at the forge shows as
// missing without anyone asking. Failures of one forge do not stop the
// others; it returns how many hooks were found missing.
func (s *Service) CheckHooks(ctx context.Context) (int, error) {
	list, err := s.o.Store.ListRepoBindings(ctx, "", "")
	if err != nil {
		return 0, err
	}
	missing := 0
	for _, b := range list {
		if b.HookID == "" {
			continue
		}
		if ctx.Err() != nil {
			return missing, ctx.Err()
		}
		nb, err := s.CheckHook(ctx, b.PipelineID)
		if err != nil {
			s.log.Warn("check a pipeline's webhook on its forge", "pipeline_id", b.PipelineID, "err", err)
			continue
		}
		if nb.HookState == HookMissing && b.HookState != HookMissing {
			missing++
			s.log.Warn("a pipeline's webhook was deleted at its forge; POST /api/v1/pipelines/{pipelineId}/webhook/repair recreates it",
				"pipeline_id", b.PipelineID, "repository", b.FullName)
		}
	}
	return missing, nil
}

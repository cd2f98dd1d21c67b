package api

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/runnel-ci/runnel/internal/apikit"
	hosting "github.com/runnel-ci/runnel/internal/forge"
	forgelist "github.com/runnel-ci/runnel/internal/forge/forges"
	"github.com/runnel-ci/runnel/internal/imagebuild"
	"github.com/runnel-ci/runnel/internal/repos"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/wire"
)

// Forge repositories (seed 001): the repositories a credential reaches,
// their activation, and a pipeline's webhook on its forge. The handlers
// decode, call the repos service and encode.

func (s *Server) repositoryJSON(b *store.RepoBinding) *repositoryJSON {
	out := &repositoryJSON{Kind: b.Kind, Provider: b.Provider, FullName: b.FullName, WebhookState: b.HookState,
		WebhookError: b.HookError, CheckedAt: wire.TimePtr(b.HookCheckedAt), StatusContext: b.StatusContext}
	if out.WebhookState == "" {
		out.WebhookState = "none"
	}
	if b.HookID != "" {
		out.WebhookURL = s.repos.HookURL(b.Kind, b.PipelineID)
	}
	return out
}

// repoJSON is a repository as a credential's list shows it.
type repoJSON struct {
	FullName      string              `json:"fullName"`
	URL           string              `json:"url"`
	CloneURL      string              `json:"cloneUrl"`
	DefaultBranch string              `json:"defaultBranch"`
	Private       bool                `json:"private"`
	Permissions   hosting.Permissions `json:"permissions"`
	Language      string              `json:"language"`
}

type repoListJSON struct {
	Items     []repoJSON `json:"items"`
	Page      int        `json:"page"`
	NextPage  *int       `json:"nextPage"`
	FetchedAt string     `json:"fetchedAt"`
}

func (s *Server) listRepositories(w http.ResponseWriter, r *http.Request) error {
	q, err := apikit.ParseQuery(r.URL.RawQuery, "search", "page", "perPage", "refresh")
	if err != nil {
		return err
	}
	id, err := pathID(r, credentialIDKind)
	if err != nil {
		return err
	}
	page, err := q.Int("page", 1, 1, 1000)
	if err != nil {
		return err
	}
	per, err := q.Int("perPage", 50, 1, 100)
	if err != nil {
		return err
	}
	if v := q.Str("refresh"); v != "" && v != "true" && v != "false" {
		return apikit.Errorf(http.StatusBadRequest, "query parameter refresh: want true or false, not %q", v)
	}
	if len(q.Str("search")) > 200 {
		return apikit.Errorf(http.StatusBadRequest, "query parameter search: at most 200 characters")
	}
	got, err := s.repos.Repositories(r.Context(), id, hosting.ListOptions{Search: q.Str("search"), Page: int(page), PerPage: int(per)},
		q.Str("refresh") == "true")
	if err != nil {
		return err
	}
	out := repoListJSON{Items: make([]repoJSON, 0, len(got.Repos)), Page: int(page), FetchedAt: wire.Time(got.FetchedAt)}
	for _, x := range got.Repos {
		out.Items = append(out.Items, repoJSON(x))
	}
	if got.Next > 0 {
		n := got.Next
		out.NextPage = &n
	}
	s.ok(w, http.StatusOK, out)
	return nil
}

// activateBody is POST /api/v1/repositories/activate.
type activateBody = repos.ActivateRequest

// activationJSON answers an activation: the pipeline made and its
// repository.
type activationJSON struct {
	PipelineID string          `json:"pipelineId"`
	Pipeline   pipelineJSON    `json:"pipeline"`
	Repository *repositoryJSON `json:"repository"`
}

func (s *Server) activateRepository(w http.ResponseWriter, r *http.Request) error {
	data, err := apikit.ReadBody(r, s.maxBody)
	if err != nil {
		return err
	}
	var b activateBody
	if _, err := apikit.Decode(data, &b, apikit.DecodeOptions{}); err != nil {
		return err
	}
	p, binding, err := s.repos.Activate(r.Context(), b)
	if err != nil {
		return err
	}
	out, err := s.pipelineOut(r.Context(), p)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/pipelines/"+p.ID)
	s.ok(w, http.StatusCreated, activationJSON{PipelineID: p.ID, Pipeline: out, Repository: s.repositoryJSON(binding)})
	return nil
}

// pipelineAction is activate, deactivate, webhook repair or the webhook's
// state: each answers the pipeline with its repository.
func (s *Server) pipelineAction(action string) apikit.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, pipelineID)
		if err != nil {
			return err
		}
		if _, err := apikit.ParseQuery(r.URL.RawQuery); err != nil {
			return err
		}
		var opts repos.StatusOptions
		if r.Method == http.MethodPost {
			data, err := apikit.ReadBody(r, s.maxBody)
			if err != nil {
				return err
			}
			var into any = &struct{}{}
			if action == "activate" {
				into = &opts
			}
			if len(data) > 0 {
				if _, err := apikit.Decode(data, into, apikit.DecodeOptions{}); err != nil {
					return err
				}
			}
		}
		ctx := r.Context()
		var (
			p *store.Pipeline
			b *store.RepoBinding
		)
		switch action {
		case "activate":
			p, b, err = s.repos.ActivatePipeline(ctx, id, opts)
		case "deactivate":
			p, b, err = s.repos.DeactivatePipeline(ctx, id)
		case "repair":
			b, err = s.repos.Repair(ctx, id)
		case "check":
			b, err = s.repos.CheckHook(ctx, id)
		}
		if err != nil {
			return err
		}
		if p == nil {
			if p, err = s.pipelines.Get(ctx, id); err != nil {
				return err
			}
		}
		out, err := s.pipelineOut(ctx, p)
		if err != nil {
			return err
		}
		if b != nil {
			out.Repository = s.repositoryJSON(b)
		}
		s.ok(w, http.StatusOK, out)
		return nil
	}
}

// Repos is the forge service the server's routes use: the outbox's
// Deliverer sends commit statuses through it.
func (s *Server) Repos() *repos.Service { return s.repos }

// activatingImages is the image build service as the API uses it: an image
// repository saved with an active tag config and a forge credential gets
// its webhook on the forge (the activation of pipelines, seed 001), so
// continuous builds need no hook made by hand. A forge that refuses is
// logged; the repository is saved all the same (POST
// /api/v1/pipelines/{code_repo_webhook_code}/activate retries and says why).
type activatingImages struct {
	ImageService
	s *Server
}

func (a activatingImages) CreateRepository(ctx context.Context, in imagebuild.RepositoryInput) (*store.ImageRepository, error) {
	r, err := a.ImageService.CreateRepository(ctx, in)
	if err == nil {
		a.activate(ctx, r)
	}
	return r, err
}

func (a activatingImages) UpdateBuildConfig(ctx context.Context, namespace, name string, buildNode *string, in []imagebuild.TagConfigInput) (*store.ImageRepository, error) {
	r, err := a.ImageService.UpdateBuildConfig(ctx, namespace, name, buildNode, in)
	if err == nil {
		a.activate(ctx, r)
	}
	return r, err
}

func (a activatingImages) activate(ctx context.Context, r *store.ImageRepository) {
	if r == nil || r.Source.CredentialID == "" || a.s.externalURL == "" || !slices.ContainsFunc(r.TagConfigs, func(t *store.ImageTagConfig) bool { return t.IsActive }) {
		return
	}
	if _, err := forgelist.Host(strings.ToLower(r.Source.Client)); err != nil {
		return
	}
	if _, _, err := a.s.repos.ActivatePipeline(ctx, r.PipelineID, repos.StatusOptions{}); err != nil {
		a.s.log.Warn("image repository saved without its webhook on the forge", "repository", r.Namespace+"/"+r.Name, "err", err)
	}
}

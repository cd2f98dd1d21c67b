package gitdef

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/gitdef/configext"
	"github.com/runnel-ci/runnel/internal/safeurl"
	"github.com/runnel-ci/runnel/internal/store"
)

// DefaultFile is the definition's path when a pipeline names none.
const DefaultFile = ".runnel/pipeline.yaml"

// DefaultReadTimeout bounds reading a definition from Git.
const DefaultReadTimeout = 60 * time.Second

// CredentialOpener opens a credential for a pipeline; one the pipeline may
// not use is an error saying so.
type CredentialOpener func(ctx context.Context, pipelineID, credentialID string) (*runnel.Credential, error)

// Source finds the definition of a new run (scheduler.DefinitionSource): the
// configuration extension's answer when one is configured and answers, else
// the pipeline file in the pipeline's repository at the triggering commit
// (the default branch's head for manual and cron runs), else nothing (the
// stored head version).
type Source struct {
	Credentials CredentialOpener
	// Extension, when set, is asked first.
	Extension *configext.Client
	// ReadTimeout bounds a read from Git (0: DefaultReadTimeout).
	ReadTimeout time.Duration
	// RunLink returns the API URL of a pipeline's runs ("" unknown).
	RunLink func(pipelineID string) string
	// ForgeHTTP calls forge APIs (nil: a client that follows no redirects).
	ForgeHTTP *http.Client
}

// FileOf returns the pipeline's definition path.
func FileOf(p *store.Pipeline) string {
	if p.PipelineFilePath != "" {
		return p.PipelineFilePath
	}
	return DefaultFile
}

// BranchOf returns the pipeline's default branch.
func BranchOf(p *store.Pipeline) string {
	if p.DefaultBranch != "" {
		return p.DefaultBranch
	}
	return "main"
}

// RepoOf returns the pipeline's repository with its credential opened.
func (s *Source) RepoOf(ctx context.Context, p *store.Pipeline) (Repo, error) {
	r := Repo{URL: p.RepoURL}
	if p.CredentialID == "" {
		return r, nil
	}
	if s.Credentials == nil {
		return r, fmt.Errorf("credential %s: this server cannot open credentials (no secrets key configured)", p.CredentialID)
	}
	c, err := s.Credentials(ctx, p.ID, p.CredentialID)
	if err != nil {
		return r, err
	}
	r.Credential = c
	return r, nil
}

// Definition implements scheduler.DefinitionSource.
func (s *Source) Definition(ctx context.Context, p *store.Pipeline, t runnel.Trigger, vars map[string]string) (*store.RunDefinition, error) {
	if s.Extension != nil && s.Extension.Endpoint != "" {
		link := ""
		if s.RunLink != nil {
			link = s.RunLink(p.ID)
		}
		req := configext.NewRequest(configext.Source{
			PipelineID: p.ID, PipelineName: p.Name, ProjectID: p.ProjectID, RepoURL: p.RepoURL,
			DefaultBranch: BranchOf(p), ConfigPath: FileOf(p), Trigger: t, Variables: vars,
			Created: time.Now().UTC(), Link: link,
		})
		data, found, err := s.Extension.Find(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("configuration extension: %w", err)
		}
		if found {
			return &store.RunDefinition{Source: "extension", CommitSHA: t.Commit, Content: []byte(data)}, nil
		}
	}
	if p.RepoURL == "" {
		return nil, nil
	}
	repo, err := s.RepoOf(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("reading %s from %s: %w", FileOf(p), p.RepoURL, err)
	}
	q := ReadRequest{Path: FileOf(p), Ref: BranchRef(BranchOf(p))}
	if t.Ref != "" {
		q.Ref, q.Commit = t.Ref, t.Commit
	} else if t.Commit != "" {
		// A commit without a ref (a manual run naming one): look for it on
		// the default branch.
		q.Commit = t.Commit
	}
	timeout := s.ReadTimeout
	if timeout <= 0 {
		timeout = DefaultReadTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	f, err := repo.Read(rctx, q)
	if err != nil {
		if errors.Is(rctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("reading %s from %s: no answer within %s", q.Path, safeurl.Redact(p.RepoURL), timeout)
		}
		return nil, fmt.Errorf("reading the definition: %w", err)
	}
	return &store.RunDefinition{Source: "git", File: f.Path, CommitSHA: f.Commit, Content: f.Content}, nil
}

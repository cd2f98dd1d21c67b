package gitdef

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/forge/forges"
	"github.com/runnel-ci/runnel/internal/store"
)

// SaveRequest is a new version of a Git-backed pipeline's definition.
type SaveRequest struct {
	Content []byte
	Message string
	// Editor becomes the commit's author.
	Editor string
	// Expected, when set, must be the default branch's head.
	Expected string
	When     time.Time
}

// SaveResult says what a save did.
type SaveResult struct {
	Mode string // direct | pr
	// Commit is the new commit (the head when Unchanged).
	Commit    string
	Parent    string
	Unchanged bool
	// Branch is the branch pushed (the default branch for direct saves).
	Branch string
	// PullRequest is the request opened by a pr save.
	PullRequest *forge.PullRequest
	// Target is the pull request's target branch.
	Target string
}

// Committer signs the commits Runnel makes.
var Committer = Signature{Name: "Runnel", Email: "runnel@localhost"}

// ErrNoForge: a pr save needs a forge credential.
var ErrNoForge = errors.New("no forge")

// Save commits the definition to the pipeline's repository: to the default
// branch (saveMode direct, a compare-and-swap on Expected), or to a new
// branch with a pull/merge request against prTargetBranch (saveMode pr).
func (s *Source) Save(ctx context.Context, p *store.Pipeline, q SaveRequest) (*SaveResult, error) {
	repo, err := s.RepoOf(ctx, p)
	if err != nil {
		return nil, err
	}
	msg := strings.TrimSpace(q.Message)
	if msg == "" {
		msg = "Update " + FileOf(p)
	}
	author := Signature{Name: q.Editor, Email: ""}
	if strings.Contains(q.Editor, "@") {
		author.Email = q.Editor
	}
	if author.Name == "" {
		author = Committer
	}
	base := BranchOf(p)
	cr := CommitRequest{
		Base: base, Expected: q.Expected, Branch: base, Path: FileOf(p), Content: q.Content,
		Message: msg, Author: author, Committer: Committer, When: q.When,
	}
	if p.SaveMode != "pr" {
		res, err := repo.Commit(ctx, cr)
		if err != nil {
			return nil, err
		}
		return &SaveResult{Mode: "direct", Commit: res.Commit, Parent: res.Parent, Unchanged: res.Unchanged, Branch: base}, nil
	}

	c := repo.Credential
	if kinds := forges.PullRequestKinds(); c == nil || !slices.Contains(kinds, c.Kind) {
		return nil, fmt.Errorf("saveMode pr opens a pull request through the forge's API: the pipeline needs a credentialId of kind %s or %s: %w",
			strings.Join(kinds[:len(kinds)-1], ", "), kinds[len(kinds)-1], ErrNoForge)
	}
	target := p.PRTargetBranch
	if target == "" {
		target = base
	}
	cr.Branch = newBranchName(p.ID, q.When)
	res, err := repo.Commit(ctx, cr)
	if err != nil {
		return nil, err
	}
	if res.Unchanged {
		return &SaveResult{Mode: "pr", Commit: res.Commit, Parent: res.Parent, Unchanged: true, Target: target}, nil
	}
	title, body, _ := strings.Cut(msg, "\n")
	body = strings.TrimSpace(body)
	if body != "" {
		body += "\n\n"
	}
	body += fmt.Sprintf("Saved through Runnel by %s: `%s` of pipeline %s (%s).", author.Name, FileOf(p), p.Name, p.ID)
	pr, err := forges.Open(ctx, s.ForgeHTTP, forge.Request{
		Kind: c.Kind, RepoURL: p.RepoURL, Token: c.Secret, Head: cr.Branch, Base: target, Title: title, Body: body,
	})
	if err != nil {
		return nil, fmt.Errorf("branch %s was pushed (commit %s), but the pull request could not be opened: %w", cr.Branch, res.Commit, err)
	}
	return &SaveResult{Mode: "pr", Commit: res.Commit, Parent: res.Parent, Branch: cr.Branch, PullRequest: pr, Target: target}, nil
}

// newBranchName names a pr save's branch: runnel/<pipeline>/<time>-<random>.
func newBranchName(pipelineID string, when time.Time) string {
	if when.IsZero() {
		when = time.Now()
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("runnel/%s/%s-%x", pipelineID, when.UTC().Format("20060102-150405"), b)
}

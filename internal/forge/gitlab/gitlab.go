// Package gitlab is GitLab as a forge: deliveries carrying the secret in
// X-Gitlab-Token, merge requests through the REST API (v4).
package gitlab

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/forge"
)

// Forge is GitLab.
type Forge struct{}

var _ forge.PullRequester = Forge{}

// Name implements forge.Forge.
func (Forge) Name() string { return forge.KindGitLab }

// Verify checks X-Gitlab-Token, which is the secret itself (GitLab signs
// nothing).
func (Forge) Verify(h http.Header, _ []byte, secret string) error {
	if secret == "" {
		return fmt.Errorf("%w: no webhook secret is set for this pipeline", forge.ErrUnauthorized)
	}
	tok := h.Get("X-Gitlab-Token")
	if tok == "" {
		return fmt.Errorf("%w: header X-Gitlab-Token is missing", forge.ErrUnauthorized)
	}
	// Hash both sides so that the comparison does not even leak the length.
	a, b := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(secret))
	if !hmac.Equal(a[:], b[:]) {
		return fmt.Errorf("%w: header X-Gitlab-Token does not match the pipeline's webhook secret", forge.ErrUnauthorized)
	}
	return nil
}

// SignatureHeader implements forge.Forge.
func (Forge) SignatureHeader(_ []byte, secret string) (string, string) {
	return "X-Gitlab-Token", secret
}

// APIBase is SCHEME://HOST/api/v4.
func (Forge) APIBase(scheme, host string) string { return scheme + "://" + host + "/api/v4" }

// OpenPullRequest opens a merge request.
func (Forge) OpenPullRequest(ctx context.Context, hc *http.Client, base, repoPath string, r forge.Request) (*forge.PullRequest, error) {
	h := http.Header{}
	h.Set("PRIVATE-TOKEN", r.Token)
	h.Set("Accept", "application/json")
	endpoint := base + "/projects/" + url.PathEscape(repoPath) + "/merge_requests"
	payload := mergePayload{SourceBranch: r.Head, TargetBranch: r.Base, Title: r.Title, Description: r.Body}
	// GitLab documents 409 Conflict for "Another open merge request already
	// exists for this source branch"; the text may be localized, so the
	// status is what counts.
	exists := func(status int, _ string, _ []string) bool { return status == http.StatusConflict }
	a, err := forge.Post(ctx, hc, forge.KindGitLab, endpoint, h, payload, r.Token, exists)
	if err != nil {
		return nil, err
	}
	var out struct {
		IID    int64  `json:"iid"`
		WebURL string `json:"web_url"`
	}
	if err := json.Unmarshal(a.Body, &out); err != nil {
		return nil, a.Errorf("decoding response: %v", err)
	}
	return a.PullRequest(out.IID, out.WebURL)
}

type mergePayload struct {
	SourceBranch string `json:"source_branch"`
	TargetBranch string `json:"target_branch"`
	Title        string `json:"title"`
	Description  string `json:"description"`
}

// Parse reads a delivery: Push Hook, Tag Push Hook and Merge Request Hook
// (open, update, reopen).
func (Forge) Parse(h http.Header, body []byte) (*forge.Event, error) {
	name := h.Get("X-Gitlab-Event")
	id := forge.FirstHeader(h, "X-Gitlab-Event-UUID", "Idempotency-Key")
	var ev *forge.Event
	switch name {
	case "Push Hook", "Tag Push Hook":
		var p struct {
			Ref               string             `json:"ref"`
			Before            string             `json:"before"`
			After             string             `json:"after"`
			CheckoutSHA       *string            `json:"checkout_sha"`
			UserUsername      string             `json:"user_username"`
			UserName          string             `json:"user_name"`
			Commits           []forge.FileCommit `json:"commits"`
			TotalCommitsCount int                `json:"total_commits_count"`
		}
		if err := forge.Decode("gitlab", name, body, &p); err != nil {
			return nil, err
		}
		ev = &forge.Event{}
		if err := forge.RefEvent(ev, p.Ref); err != nil {
			return nil, err
		}
		t := &ev.Trigger
		t.Before, t.After, t.Commit = p.Before, p.After, p.After
		t.Actor = p.UserUsername
		if t.Actor == "" {
			t.Actor = p.UserName
		}
		// GitLab lists commits oldest first; the last one is the head.
		for _, c := range p.Commits {
			if c.ID == p.After {
				t.Message, t.Author = c.Message, c.Author.Name
			}
		}
		ev.Deleted = p.After == forge.ZeroSHA
		// GitLab sends at most 20 commits: beyond that the paths are unknown.
		if p.TotalCommitsCount <= len(p.Commits) {
			ev.ChangedPaths = forge.ChangedPaths(p.Commits)
		}
	case "Merge Request Hook":
		var p struct {
			User struct {
				Username string `json:"username"`
			} `json:"user"`
			Attrs struct {
				IID          int64  `json:"iid"`
				Title        string `json:"title"`
				URL          string `json:"url"`
				SourceBranch string `json:"source_branch"`
				TargetBranch string `json:"target_branch"`
				Action       string `json:"action"`
				// A merge request from a fork has its source in another
				// project than its target.
				SourceProjectID int64 `json:"source_project_id"`
				TargetProjectID int64 `json:"target_project_id"`
				Source          struct {
					PathWithNamespace string `json:"path_with_namespace"`
				} `json:"source"`
				LastCommit struct {
					ID      string `json:"id"`
					Message string `json:"message"`
					Author  struct {
						Name string `json:"name"`
					} `json:"author"`
				} `json:"last_commit"`
			} `json:"object_attributes"`
		}
		if err := forge.Decode("gitlab", name, body, &p); err != nil {
			return nil, err
		}
		a := p.Attrs
		if !forge.PRAccepted(a.Action, "open", "update", "reopen") {
			ev = forge.Ignored("merge request action %q does not start runs (accepted: open, update, reopen)", a.Action)
			break
		}
		ev = &forge.Event{Kind: forge.KindPullRequest}
		ev.Trigger = runnel.Trigger{
			Ref: "refs/merge-requests/" + strconv.FormatInt(a.IID, 10) + "/head", Branch: a.SourceBranch,
			Commit: a.LastCommit.ID, After: a.LastCommit.ID, Actor: p.User.Username, Action: a.Action,
			Author: a.LastCommit.Author.Name, Message: a.LastCommit.Message,
			PullRequest: runnel.PullRequest{Number: a.IID, Title: a.Title, Head: a.SourceBranch, Base: a.TargetBranch, URL: a.URL,
				Fork: a.SourceProjectID != a.TargetProjectID, HeadRepo: a.Source.PathWithNamespace},
		}
	case "":
		return nil, fmt.Errorf("%w: header X-Gitlab-Event is missing", forge.ErrPayload)
	default:
		ev = forge.Ignored("GitLab event %q does not start runs (accepted: Push Hook, Tag Push Hook, Merge Request Hook)", name)
	}
	ev.DeliveryID = id
	return ev, nil
}

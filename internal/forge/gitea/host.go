package gitea

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/forge/github"
)

var _ forge.Host = Forge{}

// maxPerPage is Gitea's default [api] MAX_RESPONSE_ITEMS: a larger limit is
// cut to it.
const maxPerPage = 50

func header(token string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "token "+token)
	h.Set("Accept", "application/json")
	return h
}

func base(c forge.Conn) string { return strings.TrimRight(c.Base, "/") }

// Account implements forge.Host: GET /user.
func (Forge) Account(ctx context.Context, c forge.Conn) (*forge.Account, error) {
	var u github.APIUser
	a, err := forge.JSON(ctx, c, forge.KindGitea, http.MethodGet, base(c)+"/user", header(c.Token), nil, &u)
	if err != nil {
		return nil, err
	}
	return u.Account(a)
}

// Repos implements forge.Host: GET /user/repos, the repositories the
// account owns, collaborates on or reaches through its organisations' teams;
// the next page from the Link header Gitea sends. (Gitea leaves out a
// public repository of another user that the account only reads as a
// collaborator: it records no access for what everyone may read.)
//
// With a Search, GET /repos/search?q=SEARCH&uid=ACCOUNT: the same
// repositories (uid is the account's id, read from /user; without
// exclusive, collaborations and organisations count), filtered by Gitea on
// the repository's name (not its owner's; a comma separates several
// keywords), and paged by Gitea too.
func (f Forge) Repos(ctx context.Context, c forge.Conn, o forge.ListOptions) (*forge.RepoPage, error) {
	q := url.Values{}
	q.Set("limit", strconv.Itoa(forge.PageSize(o, maxPerPage)))
	q.Set("page", strconv.Itoa(max(o.Page, 1)))
	var (
		in  []github.APIRepo
		a   *forge.Answer
		err error
	)
	if search := strings.TrimSpace(o.Search); search == "" {
		a, err = forge.JSON(ctx, c, forge.KindGitea, http.MethodGet, base(c)+"/user/repos?"+q.Encode(), header(c.Token), nil, &in)
		if err != nil {
			return nil, err
		}
	} else {
		me, err := f.Account(ctx, c)
		if err != nil {
			return nil, err
		}
		q.Set("q", search)
		q.Set("uid", me.ID)
		var out struct {
			OK    *bool            `json:"ok"`
			Error string           `json:"error"`
			Data  []github.APIRepo `json:"data"`
		}
		a, err = forge.JSON(ctx, c, forge.KindGitea, http.MethodGet, base(c)+"/repos/search?"+q.Encode(), header(c.Token), nil, &out)
		if err != nil {
			return nil, err
		}
		if out.OK != nil && !*out.OK {
			return nil, a.Errorf("search failed: %s", out.Error)
		}
		in = out.Data
	}
	repos, err := github.Repos(a, in)
	if err != nil {
		return nil, err
	}
	return &forge.RepoPage{Repos: repos, Next: forge.Paged(a)}, nil
}

// Repo implements forge.Host: GET /repos/OWNER/NAME.
func (Forge) Repo(ctx context.Context, c forge.Conn, fullName string) (*forge.Repo, error) {
	endpoint, err := github.RepoEndpoint(forge.KindGitea, c, fullName)
	if err != nil {
		return nil, err
	}
	var r github.APIRepo
	a, err := forge.JSON(ctx, c, forge.KindGitea, http.MethodGet, endpoint, header(c.Token), nil, &r)
	if err != nil {
		return nil, err
	}
	if r.FullName == "" {
		return nil, a.Errorf("the repository has no full_name")
	}
	out := r.Repo()
	return &out, nil
}

// HookEvents are the events Runnel's Gitea webhooks subscribe to. Gitea
// sends a push for a tag too (and a create, which Runnel ignores, so it is
// not asked for). "pull_request" would subscribe to every pull request
// event (assignments, labels, comments, reviews); "pull_request_only" is
// opening, closing, reopening and editing, "pull_request_sync" a push to
// the head branch (action "synchronized"). Gitea reads them back as push,
// pull_request and pull_request_sync.
var HookEvents = []string{"push", "pull_request_only", "pull_request_sync"}

// CreateHook implements forge.Host: POST /repos/OWNER/NAME/hooks, a hook of
// type gitea. Gitea has no per-hook TLS setting (its [webhook]
// SKIP_TLS_VERIFY is server-wide): h.InsecureSSL is not sent. Gitea
// delivers only to hosts its [webhook] ALLOWED_HOST_LIST allows (by
// default external ones: not loopback or private addresses), which it
// checks when delivering, not here.
func (Forge) CreateHook(ctx context.Context, c forge.Conn, fullName string, h forge.HookSpec) (*forge.Hook, error) {
	endpoint, err := github.RepoEndpoint(forge.KindGitea, c, fullName)
	if err != nil {
		return nil, err
	}
	payload := map[string]any{
		"type":   "gitea",
		"active": true,
		"events": HookEvents,
		"config": map[string]string{"url": h.URL, "content_type": "json", "secret": h.Secret},
	}
	var out github.APIHook
	a, err := forge.JSON(ctx, c, forge.KindGitea, http.MethodPost, endpoint+"/hooks", header(c.Token), payload, &out)
	if err != nil {
		return nil, github.ScrubSecret(err, h.Secret)
	}
	return out.Hook(a)
}

func hookEndpoint(c forge.Conn, fullName, id string) (string, error) {
	endpoint, err := github.RepoEndpoint(forge.KindGitea, c, fullName)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("forge: gitea: webhook id is empty")
	}
	return endpoint + "/hooks/" + url.PathEscape(id), nil
}

// Hook implements forge.Host: GET /repos/OWNER/NAME/hooks/ID.
func (Forge) Hook(ctx context.Context, c forge.Conn, fullName, id string) (*forge.Hook, error) {
	endpoint, err := hookEndpoint(c, fullName, id)
	if err != nil {
		return nil, err
	}
	var out github.APIHook
	a, err := forge.JSON(ctx, c, forge.KindGitea, http.MethodGet, endpoint, header(c.Token), nil, &out)
	if err != nil {
		return nil, err
	}
	return out.Hook(a)
}

// DeleteHook implements forge.Host: DELETE /repos/OWNER/NAME/hooks/ID.
func (Forge) DeleteHook(ctx context.Context, c forge.Conn, fullName, id string) error {
	endpoint, err := hookEndpoint(c, fullName, id)
	if err != nil {
		return err
	}
	_, err = forge.Call(ctx, c, forge.KindGitea, http.MethodDelete, endpoint, header(c.Token), nil)
	return github.IgnoreGone(err)
}

// statusStates maps Runnel's states onto Gitea's (pending, success, error,
// failure, warning, skipped): a running run is pending; a cancelled one is
// an error, its description saying it was cancelled (Gitea Actions reports
// its own cancelled runs as failures, but the code did not fail).
var statusStates = map[string]string{
	forge.StatusPending:   "pending",
	forge.StatusRunning:   "pending",
	forge.StatusSuccess:   "success",
	forge.StatusFailure:   "failure",
	forge.StatusError:     "error",
	forge.StatusCancelled: "error",
}

// SetStatus implements forge.Host: POST /repos/OWNER/NAME/statuses/SHA.
func (Forge) SetStatus(ctx context.Context, c forge.Conn, fullName, sha string, s forge.CommitStatus) error {
	state, ok := statusStates[s.State]
	if !ok {
		return fmt.Errorf("forge: gitea: unknown commit status state %q", s.State)
	}
	endpoint, err := github.StatusEndpoint(forge.KindGitea, c, fullName, sha)
	if err != nil {
		return err
	}
	payload := github.StatusPayload{
		State: state, TargetURL: s.TargetURL, Context: github.StatusContext(s),
		Description: github.StatusDescription(s),
	}
	_, err = forge.Call(ctx, c, forge.KindGitea, http.MethodPost, endpoint, header(c.Token), payload)
	return err
}

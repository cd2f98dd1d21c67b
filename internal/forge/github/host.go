package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/runnel-ci/runnel/internal/forge"
)

var _ forge.Host = Forge{}

// maxSearchPages bounds how many pages of /user/repos one Repos call with a
// Search reads (GitHub has no search restricted to the repositories an
// account reaches: the names are filtered here).
const maxSearchPages = 10

// maxDescription is the length GitHub accepts for a status's description,
// in characters.
const maxDescription = 140

func header(token string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	h.Set("Accept", "application/vnd.github+json")
	h.Set("X-GitHub-Api-Version", "2022-11-28")
	return h
}

func base(c forge.Conn) string { return strings.TrimRight(c.Base, "/") }

// RepoEndpoint is BASE/repos/OWNER/NAME for a full name that is exactly
// "owner/name" (GitHub's and Gitea's shape); another is an error naming
// kind.
func RepoEndpoint(kind string, c forge.Conn, fullName string) (string, error) {
	owner, name, ok := strings.Cut(fullName, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") ||
		owner == "." || owner == ".." || name == "." || name == ".." {
		return "", fmt.Errorf("forge: %s: repository %q must be owner/name", kind, fullName)
	}
	return strings.TrimRight(c.Base, "/") + "/repos/" + forge.PathEscapeRepo(fullName), nil
}

// APIRepo is a repository as GitHub's and Gitea's APIs describe it.
type APIRepo struct {
	FullName      string `json:"full_name"`
	HTMLURL       string `json:"html_url"`
	CloneURL      string `json:"clone_url"`
	DefaultBranch string `json:"default_branch"`
	Private       bool   `json:"private"`
	Permissions   struct {
		Admin bool `json:"admin"`
		Push  bool `json:"push"`
		Pull  bool `json:"pull"`
	} `json:"permissions"`
	Language string `json:"language"`
}

// Repo is r as Runnel lists it.
func (r *APIRepo) Repo() forge.Repo {
	return forge.Repo{
		FullName: r.FullName, URL: r.HTMLURL, CloneURL: r.CloneURL, DefaultBranch: r.DefaultBranch,
		Private:     r.Private,
		Permissions: forge.Permissions{Pull: r.Permissions.Pull, Push: r.Permissions.Push, Admin: r.Permissions.Admin},
		Language:    r.Language,
	}
}

// Repos converts a page of repositories, refusing one without a full name.
func Repos(a *forge.Answer, in []APIRepo) ([]forge.Repo, error) {
	out := make([]forge.Repo, 0, len(in))
	for i := range in {
		if in[i].FullName == "" {
			return nil, a.Errorf("repository %d of the list has no full_name", i)
		}
		out = append(out, in[i].Repo())
	}
	return out, nil
}

// APIHook is a webhook as GitHub's and Gitea's APIs describe it; the URL
// it delivers to is config.url (Gitea's top-level url is its settings page).
type APIHook struct {
	ID     json.Number `json:"id"`
	Active bool        `json:"active"`
	Events []string    `json:"events"`
	Config struct {
		URL string `json:"url"`
	} `json:"config"`
}

// Hook is h as Runnel has it, its events sorted (Gitea lists them in no
// particular order); an answer without an id is an error.
func (h *APIHook) Hook(a *forge.Answer) (*forge.Hook, error) {
	if h.ID == "" || h.ID == "0" {
		return nil, a.Errorf("the webhook has no id")
	}
	events := append([]string(nil), h.Events...)
	sort.Strings(events)
	return &forge.Hook{ID: h.ID.String(), URL: h.Config.URL, Events: events, Active: h.Active}, nil
}

// APIUser is a user as GitHub's and Gitea's APIs describe it (GitHub's
// display name is name, Gitea's full_name).
type APIUser struct {
	ID        json.Number `json:"id"`
	Login     string      `json:"login"`
	Name      string      `json:"name"`
	FullName  string      `json:"full_name"`
	AvatarURL string      `json:"avatar_url"`
}

// Account is u as Runnel has it; one without an id or login is an error.
func (u *APIUser) Account(a *forge.Answer) (*forge.Account, error) {
	if u.ID == "" || u.ID == "0" || u.Login == "" {
		return nil, a.Errorf("the user has no id or login")
	}
	name := u.Name
	if name == "" {
		name = u.FullName
	}
	return &forge.Account{ID: u.ID.String(), Login: u.Login, Name: name, AvatarURL: u.AvatarURL}, nil
}

// Account implements forge.Host: GET /user.
func (Forge) Account(ctx context.Context, c forge.Conn) (*forge.Account, error) {
	var u APIUser
	a, err := forge.JSON(ctx, c, forge.KindGitHub, http.MethodGet, base(c)+"/user", header(c.Token), nil, &u)
	if err != nil {
		return nil, err
	}
	return u.Account(a)
}

// Repos implements forge.Host: GET /user/repos (owned, collaborator and
// organization member repositories, by full name), the next page from the
// Link header.
//
// GitHub's search API cannot be limited to the repositories an account
// reaches, so a Search is a case-insensitive substring of the full name
// matched here: from page o.Page, pages of 100 are read until PerPage
// repositories matched, the list ended, or 10 pages were read. Next is then
// the page after the last one read, so one page of results may hold fewer
// (even none) or more than PerPage repositories.
func (Forge) Repos(ctx context.Context, c forge.Conn, o forge.ListOptions) (*forge.RepoPage, error) {
	page := max(o.Page, 1)
	list := func(page, perPage int) ([]forge.Repo, int, error) {
		q := url.Values{}
		q.Set("per_page", strconv.Itoa(perPage))
		q.Set("page", strconv.Itoa(page))
		q.Set("sort", "full_name")
		q.Set("affiliation", "owner,collaborator,organization_member")
		var in []APIRepo
		a, err := forge.JSON(ctx, c, forge.KindGitHub, http.MethodGet, base(c)+"/user/repos?"+q.Encode(), header(c.Token), nil, &in)
		if err != nil {
			return nil, 0, err
		}
		repos, err := Repos(a, in)
		if err != nil {
			return nil, 0, err
		}
		return repos, forge.Paged(a), nil
	}
	perPage := forge.PageSize(o, 100)
	search := strings.ToLower(strings.TrimSpace(o.Search))
	if search == "" {
		repos, next, err := list(page, perPage)
		if err != nil {
			return nil, err
		}
		return &forge.RepoPage{Repos: repos, Next: next}, nil
	}
	out := &forge.RepoPage{Repos: []forge.Repo{}}
	for read := 1; ; read++ {
		repos, next, err := list(page, 100)
		if err != nil {
			return nil, err
		}
		for _, r := range repos {
			if strings.Contains(strings.ToLower(r.FullName), search) {
				out.Repos = append(out.Repos, r)
			}
		}
		if next <= page { // the last page (or a Link going backwards)
			out.Next = 0
			return out, nil
		}
		out.Next = next
		if len(out.Repos) >= perPage || read == maxSearchPages {
			return out, nil
		}
		page = next
	}
}

// Repo implements forge.Host: GET /repos/OWNER/NAME.
func (Forge) Repo(ctx context.Context, c forge.Conn, fullName string) (*forge.Repo, error) {
	endpoint, err := RepoEndpoint(forge.KindGitHub, c, fullName)
	if err != nil {
		return nil, err
	}
	var r APIRepo
	a, err := forge.JSON(ctx, c, forge.KindGitHub, http.MethodGet, endpoint, header(c.Token), nil, &r)
	if err != nil {
		return nil, err
	}
	if r.FullName == "" {
		return nil, a.Errorf("the repository has no full_name")
	}
	out := r.Repo()
	return &out, nil
}

// HookEvents are the events Runnel's GitHub webhooks send: a tag is a push.
var HookEvents = []string{"push", "pull_request"}

// CreateHook implements forge.Host: POST /repos/OWNER/NAME/hooks.
func (Forge) CreateHook(ctx context.Context, c forge.Conn, fullName string, h forge.HookSpec) (*forge.Hook, error) {
	endpoint, err := RepoEndpoint(forge.KindGitHub, c, fullName)
	if err != nil {
		return nil, err
	}
	insecure := "0"
	if h.InsecureSSL {
		insecure = "1"
	}
	payload := map[string]any{
		"name":   "web",
		"active": true,
		"events": HookEvents,
		"config": map[string]string{
			"url": h.URL, "content_type": "json", "secret": h.Secret, "insecure_ssl": insecure,
		},
	}
	var out APIHook
	a, err := forge.JSON(ctx, c, forge.KindGitHub, http.MethodPost, endpoint+"/hooks", header(c.Token), payload, &out)
	if err != nil {
		return nil, ScrubSecret(err, h.Secret)
	}
	return out.Hook(a)
}

// Hook implements forge.Host: GET /repos/OWNER/NAME/hooks/ID.
func (Forge) Hook(ctx context.Context, c forge.Conn, fullName, id string) (*forge.Hook, error) {
	endpoint, err := hookEndpoint(forge.KindGitHub, c, fullName, id)
	if err != nil {
		return nil, err
	}
	var out APIHook
	a, err := forge.JSON(ctx, c, forge.KindGitHub, http.MethodGet, endpoint, header(c.Token), nil, &out)
	if err != nil {
		return nil, err
	}
	return out.Hook(a)
}

// DeleteHook implements forge.Host: DELETE /repos/OWNER/NAME/hooks/ID.
func (Forge) DeleteHook(ctx context.Context, c forge.Conn, fullName, id string) error {
	endpoint, err := hookEndpoint(forge.KindGitHub, c, fullName, id)
	if err != nil {
		return err
	}
	_, err = forge.Call(ctx, c, forge.KindGitHub, http.MethodDelete, endpoint, header(c.Token), nil)
	return IgnoreGone(err)
}

// ScrubSecret keeps a webhook's secret out of an error (were the forge to
// quote it back); secrets too short to be one are left, so as not to
// redact every word they occur in.
func ScrubSecret(err error, secret string) error {
	if len(secret) < 8 {
		return err
	}
	return forge.Scrub(err, secret)
}

// IgnoreGone is err, or nil when it says the resource is gone.
func IgnoreGone(err error) error {
	if errors.Is(err, forge.ErrGone) {
		return nil
	}
	return err
}

func hookEndpoint(kind string, c forge.Conn, fullName, id string) (string, error) {
	endpoint, err := RepoEndpoint(kind, c, fullName)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("forge: %s: webhook id is empty", kind)
	}
	return endpoint + "/hooks/" + url.PathEscape(id), nil
}

// statusStates maps Runnel's states onto GitHub's (pending, success,
// failure, error): a running run is pending, a cancelled one an error.
var statusStates = map[string]string{
	forge.StatusPending:   "pending",
	forge.StatusRunning:   "pending",
	forge.StatusSuccess:   "success",
	forge.StatusFailure:   "failure",
	forge.StatusError:     "error",
	forge.StatusCancelled: "error",
}

// StatusDescription is s's description, saying "Running" or "Cancelled"
// when it is empty and the forge's state does not.
func StatusDescription(s forge.CommitStatus) string {
	if d := strings.TrimSpace(s.Description); d != "" {
		return d
	}
	switch s.State {
	case forge.StatusRunning:
		return "Running"
	case forge.StatusCancelled:
		return "Cancelled"
	}
	return ""
}

// StatusContext is s's context, "runnel" when empty.
func StatusContext(s forge.CommitStatus) string {
	if c := strings.TrimSpace(s.Context); c != "" {
		return c
	}
	return "runnel"
}

// Cut bounds s to n characters, ending with "…" when it was longer; it
// never splits a UTF-8 sequence.
func Cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	count := 0
	for i := range s {
		if count == n-1 {
			return s[:i] + "…"
		}
		count++
	}
	return s
}

// StatusPayload is the body of POST /repos/OWNER/NAME/statuses/SHA on
// GitHub and Gitea.
type StatusPayload struct {
	State       string `json:"state"`
	TargetURL   string `json:"target_url,omitempty"`
	Description string `json:"description,omitempty"`
	Context     string `json:"context"`
}

// StatusEndpoint is the statuses endpoint of a commit.
func StatusEndpoint(kind string, c forge.Conn, fullName, sha string) (string, error) {
	endpoint, err := RepoEndpoint(kind, c, fullName)
	if err != nil {
		return "", err
	}
	if sha == "" || strings.ContainsAny(sha, "/?# ") {
		return "", fmt.Errorf("forge: %s: commit %q is not a commit id", kind, sha)
	}
	return endpoint + "/statuses/" + url.PathEscape(sha), nil
}

// SetStatus implements forge.Host: POST /repos/OWNER/NAME/statuses/SHA,
// the description cut to GitHub's 140 characters.
func (Forge) SetStatus(ctx context.Context, c forge.Conn, fullName, sha string, s forge.CommitStatus) error {
	state, ok := statusStates[s.State]
	if !ok {
		return fmt.Errorf("forge: github: unknown commit status state %q", s.State)
	}
	endpoint, err := StatusEndpoint(forge.KindGitHub, c, fullName, sha)
	if err != nil {
		return err
	}
	payload := StatusPayload{
		State: state, TargetURL: s.TargetURL, Context: StatusContext(s),
		Description: Cut(StatusDescription(s), maxDescription),
	}
	_, err = forge.Call(ctx, c, forge.KindGitHub, http.MethodPost, endpoint, header(c.Token), payload)
	return err
}

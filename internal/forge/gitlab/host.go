package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/runnel-ci/runnel/internal/forge"
)

var _ forge.Host = Forge{}

// GitLab's access levels (Members API): what a member may do.
const (
	accessReporter   = 20 // reads the code
	accessDeveloper  = 30 // pushes
	accessMaintainer = 40 // manages webhooks
)

// maxPerPage is the most GitLab returns a page.
const maxPerPage = 100

// Hook event names, as GitLab's *_events flags name them.
const (
	eventPush          = "push"
	eventTagPush       = "tag_push"
	eventMergeRequests = "merge_requests"
)

// auth is the header GitLab authenticates an OAuth access token with.
func auth(c forge.Conn) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+c.Token)
	return h
}

// endpoint joins the API base and path.
func endpoint(c forge.Conn, path string) string {
	return strings.TrimRight(c.Base, "/") + path
}

// projectPath is /projects/:id for a project's full path
// ("group/sub/name"), the whole path URL-encoded as GitLab wants it
// ("group%2Fsub%2Fname").
func projectPath(fullName string) string {
	return "/projects/" + url.PathEscape(strings.Trim(fullName, "/"))
}

// Account implements forge.Host: GET /user.
func (Forge) Account(ctx context.Context, c forge.Conn) (*forge.Account, error) {
	var u struct {
		ID        int64  `json:"id"`
		Username  string `json:"username"`
		Name      string `json:"name"`
		AvatarURL string `json:"avatar_url"`
	}
	a, err := forge.JSON(ctx, c, forge.KindGitLab, http.MethodGet, endpoint(c, "/user"), auth(c), nil, &u)
	if err != nil {
		return nil, err
	}
	if u.ID == 0 || u.Username == "" {
		return nil, a.Errorf("response lacks the user's id or username")
	}
	return &forge.Account{ID: strconv.FormatInt(u.ID, 10), Login: u.Username, Name: u.Name, AvatarURL: u.AvatarURL}, nil
}

// project is the part of GitLab's project representation (simple=false)
// Runnel reads.
type project struct {
	PathWithNamespace string `json:"path_with_namespace"`
	WebURL            string `json:"web_url"`
	HTTPURLToRepo     string `json:"http_url_to_repo"`
	DefaultBranch     string `json:"default_branch"`
	Visibility        string `json:"visibility"`
	Permissions       struct {
		ProjectAccess *access `json:"project_access"`
		GroupAccess   *access `json:"group_access"`
	} `json:"permissions"`
}

type access struct {
	AccessLevel int `json:"access_level"`
}

// repo maps a project onto a forge.Repo. GitLab lists no language with a
// project (only GET /projects/:id/languages has them, a call per project),
// so Language stays empty. The permissions are those of the higher of the
// project's and its group's access level; a public or internal project is
// readable by any signed-in user whatever the level.
func (p *project) repo() forge.Repo {
	level := 0
	if a := p.Permissions.ProjectAccess; a != nil {
		level = max(level, a.AccessLevel)
	}
	if a := p.Permissions.GroupAccess; a != nil {
		level = max(level, a.AccessLevel)
	}
	public := p.Visibility == "public" || p.Visibility == "internal"
	return forge.Repo{
		FullName:      p.PathWithNamespace,
		URL:           p.WebURL,
		CloneURL:      p.HTTPURLToRepo,
		DefaultBranch: p.DefaultBranch,
		Private:       p.Visibility != "public",
		Permissions: forge.Permissions{
			Pull:  public || level >= accessReporter,
			Push:  level >= accessDeveloper,
			Admin: level >= accessMaintainer,
		},
	}
}

// Repos implements forge.Host: GET /projects for the projects the account
// is a member of, by path; o.Search matches the name and, with
// search_namespaces, the namespace too. The next page comes from
// X-Next-Page.
func (Forge) Repos(ctx context.Context, c forge.Conn, o forge.ListOptions) (*forge.RepoPage, error) {
	q := url.Values{}
	q.Set("membership", "true")
	q.Set("simple", "false")
	q.Set("order_by", "path")
	q.Set("sort", "asc")
	q.Set("per_page", strconv.Itoa(forge.PageSize(o, maxPerPage)))
	q.Set("page", strconv.Itoa(max(o.Page, 1)))
	if s := strings.TrimSpace(o.Search); s != "" {
		q.Set("search", s)
		q.Set("search_namespaces", "true")
	}
	var ps []project
	a, err := forge.JSON(ctx, c, forge.KindGitLab, http.MethodGet, endpoint(c, "/projects?"+q.Encode()), auth(c), nil, &ps)
	if err != nil {
		return nil, err
	}
	page := &forge.RepoPage{Repos: make([]forge.Repo, 0, len(ps)), Next: forge.Paged(a)}
	for i := range ps {
		page.Repos = append(page.Repos, ps[i].repo())
	}
	return page, nil
}

// Repo implements forge.Host: GET /projects/:id.
func (Forge) Repo(ctx context.Context, c forge.Conn, fullName string) (*forge.Repo, error) {
	var p project
	a, err := forge.JSON(ctx, c, forge.KindGitLab, http.MethodGet, endpoint(c, projectPath(fullName)), auth(c), nil, &p)
	if err != nil {
		return nil, err
	}
	if p.PathWithNamespace == "" {
		return nil, a.Errorf("response lacks the project's path_with_namespace")
	}
	r := p.repo()
	return &r, nil
}

// hook is GitLab's project hook.
type hook struct {
	ID                  int64  `json:"id"`
	URL                 string `json:"url"`
	PushEvents          bool   `json:"push_events"`
	TagPushEvents       bool   `json:"tag_push_events"`
	MergeRequestsEvents bool   `json:"merge_requests_events"`
	// AlertStatus (GitLab 15.7+): executable, temporarily_disabled (after
	// failing deliveries, re-enabled by itself) or disabled (until edited).
	AlertStatus string `json:"alert_status"`
}

func (h *hook) hook() *forge.Hook {
	out := &forge.Hook{ID: strconv.FormatInt(h.ID, 10), URL: h.URL, Events: []string{}, Active: h.AlertStatus != "disabled"}
	if h.PushEvents {
		out.Events = append(out.Events, eventPush)
	}
	if h.TagPushEvents {
		out.Events = append(out.Events, eventTagPush)
	}
	if h.MergeRequestsEvents {
		out.Events = append(out.Events, eventMergeRequests)
	}
	return out
}

// hookPayload creates a project hook. GitLab sends token back in
// X-Gitlab-Token with every delivery (see Verify); it never shows it again.
type hookPayload struct {
	URL                   string `json:"url"`
	Token                 string `json:"token"`
	PushEvents            bool   `json:"push_events"`
	TagPushEvents         bool   `json:"tag_push_events"`
	MergeRequestsEvents   bool   `json:"merge_requests_events"`
	EnableSSLVerification bool   `json:"enable_ssl_verification"`
}

// CreateHook implements forge.Host: POST /projects/:id/hooks (Maintainer
// access is needed).
func (Forge) CreateHook(ctx context.Context, c forge.Conn, fullName string, s forge.HookSpec) (*forge.Hook, error) {
	payload := hookPayload{
		URL: s.URL, Token: s.Secret,
		PushEvents: true, TagPushEvents: true, MergeRequestsEvents: true,
		EnableSSLVerification: !s.InsecureSSL,
	}
	var h hook
	a, err := forge.JSON(ctx, c, forge.KindGitLab, http.MethodPost, endpoint(c, projectPath(fullName)+"/hooks"), auth(c), payload, &h)
	if err != nil {
		return nil, err
	}
	if h.ID == 0 {
		return nil, a.Errorf("response lacks the hook's id")
	}
	return h.hook(), nil
}

// Hook implements forge.Host: GET /projects/:id/hooks/:hook_id.
func (Forge) Hook(ctx context.Context, c forge.Conn, fullName, id string) (*forge.Hook, error) {
	var h hook
	a, err := forge.JSON(ctx, c, forge.KindGitLab, http.MethodGet, endpoint(c, projectPath(fullName)+"/hooks/"+url.PathEscape(id)), auth(c), nil, &h)
	if err != nil {
		return nil, err
	}
	if h.ID == 0 {
		return nil, a.Errorf("response lacks the hook's id")
	}
	return h.hook(), nil
}

// DeleteHook implements forge.Host: DELETE /projects/:id/hooks/:hook_id; a
// hook (or project) already gone is no error.
func (Forge) DeleteHook(ctx context.Context, c forge.Conn, fullName, id string) error {
	_, err := forge.Call(ctx, c, forge.KindGitLab, http.MethodDelete, endpoint(c, projectPath(fullName)+"/hooks/"+url.PathEscape(id)), auth(c), nil)
	if errors.Is(err, forge.ErrGone) {
		return nil
	}
	return err
}

// states maps Runnel's status states onto GitLab's (pending, running,
// success, failed, canceled).
var states = map[string]string{
	forge.StatusPending:   "pending",
	forge.StatusRunning:   "running",
	forge.StatusSuccess:   "success",
	forge.StatusFailure:   "failed",
	forge.StatusError:     "failed",
	forge.StatusCancelled: "canceled",
}

// statusPayload is a commit status.
type statusPayload struct {
	State       string `json:"state"`
	Name        string `json:"name,omitempty"`
	TargetURL   string `json:"target_url,omitempty"`
	Description string `json:"description,omitempty"`
}

// SetStatus implements forge.Host: POST /projects/:id/statuses/:sha.
// GitLab refuses to post the state a status already has (400 "Cannot
// transition status via :run from :running"): the commit shows what was
// asked, so that answer is success. Other refused transitions stay errors.
func (Forge) SetStatus(ctx context.Context, c forge.Conn, fullName, sha string, s forge.CommitStatus) error {
	state, ok := states[s.State]
	if !ok {
		return fmt.Errorf("forge: %s: unknown commit status state %q", forge.KindGitLab, s.State)
	}
	payload := statusPayload{State: state, Name: s.Context, TargetURL: s.TargetURL, Description: s.Description}
	_, err := forge.Call(ctx, c, forge.KindGitLab, http.MethodPost, endpoint(c, projectPath(fullName)+"/statuses/"+url.PathEscape(sha)), auth(c), payload)
	if sameState(err, state) {
		return nil
	}
	return err
}

// sameState reports whether err is GitLab's answer to posting state on a
// status that already has it: 400 "Cannot transition status via :EVENT from
// :STATE (Reason(s): …)".
func sameState(err error, state string) bool {
	var fe *forge.Error
	if !errors.As(err, &fe) || fe.StatusCode != http.StatusBadRequest {
		return false
	}
	m := fe.Message
	if !strings.Contains(m, "Cannot transition status via") {
		return false
	}
	_, from, ok := strings.Cut(m, " from :")
	if !ok {
		return false
	}
	if i := strings.IndexFunc(from, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r == '_') }); i >= 0 {
		from = from[:i]
	}
	return from == state
}

package bitbucket

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/safeurl"
)

var _ forge.Host = Forge{}

const (
	// cloudHost is Bitbucket Cloud's web host, cloudAPI its API.
	cloudHost = "bitbucket.org"
	cloudAPI  = "https://api.bitbucket.org/2.0"
	// maxPerPage is the largest pagelen Bitbucket accepts.
	maxPerPage = 100
	// maxKey is the longest commit status key Bitbucket takes.
	maxKey = 40
	// maxFilter bounds the BBQL filter of one permissions request, so that
	// the URL stays well within what servers and proxies accept: a page of
	// repositories with long names takes more than one request.
	maxFilter = 2500
	// maxPermPages bounds the pages of one permissions request followed.
	maxPermPages = 10
)

// Hook events Runnel subscribes to; a tag push is a repo:push.
var hookEvents = []string{"repo:push", "pullrequest:created", "pullrequest:updated"}

// APIBase is https://api.bitbucket.org/2.0 for bitbucket.org and
// SCHEME://HOST/api/2.0 for any other host (a server standing in for
// Bitbucket Cloud), as internal/sso has it.
func (Forge) APIBase(scheme, host string) string {
	if strings.EqualFold(host, cloudHost) {
		return cloudAPI
	}
	return scheme + "://" + host + "/api/2.0"
}

// auth is the header Bitbucket authenticates an OAuth access token with.
func auth(c forge.Conn) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+c.Token)
	return h
}

// base is the API base without a trailing slash.
func base(c forge.Conn) string { return strings.TrimRight(c.Base, "/") }

// endpoint joins the API base and path.
func endpoint(c forge.Conn, path string) string { return base(c) + path }

// repoPath is /repositories/{workspace}/{slug} for a full name.
func repoPath(fullName string) (string, error) {
	ws, slug, ok := strings.Cut(strings.Trim(fullName, "/"), "/")
	if !ok || ws == "" || slug == "" || strings.Contains(slug, "/") {
		return "", fmt.Errorf("forge: %s: repository %q is not workspace/slug", forge.KindBitbucket, fullName)
	}
	return "/repositories/" + url.PathEscape(ws) + "/" + url.PathEscape(slug), nil
}

// quote is s as a BBQL string literal: in double quotes, with backslashes
// and double quotes escaped.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// link is Bitbucket's {"href": …}.
type link struct {
	Href string `json:"href"`
}

// Account implements forge.Host: GET /user. The id is the user's UUID
// (with its braces).
func (Forge) Account(ctx context.Context, c forge.Conn) (*forge.Account, error) {
	var u struct {
		UUID        string `json:"uuid"`
		Username    string `json:"username"`
		Nickname    string `json:"nickname"`
		DisplayName string `json:"display_name"`
		Links       struct {
			Avatar link `json:"avatar"`
		} `json:"links"`
	}
	a, err := forge.JSON(ctx, c, forge.KindBitbucket, http.MethodGet, endpoint(c, "/user"), auth(c), nil, &u)
	if err != nil {
		return nil, err
	}
	login := u.Username
	if login == "" {
		login = u.Nickname
	}
	if u.UUID == "" || login == "" {
		return nil, a.Errorf("response lacks the user's uuid or username")
	}
	return &forge.Account{ID: u.UUID, Login: login, Name: u.DisplayName, AvatarURL: u.Links.Avatar.Href}, nil
}

// repository is the part of Bitbucket's repository Runnel reads.
type repository struct {
	FullName   string `json:"full_name"`
	IsPrivate  bool   `json:"is_private"`
	Language   string `json:"language"`
	Mainbranch *struct {
		Name string `json:"name"`
	} `json:"mainbranch"`
	Links struct {
		HTML  link `json:"html"`
		Clone []struct {
			Name string `json:"name"`
			Href string `json:"href"`
		} `json:"clone"`
	} `json:"links"`
}

// repo maps a repository onto a forge.Repo with the account's permission
// on it (read, write, admin; "" when Bitbucket lists none: the account
// still reads what it was shown).
func (r *repository) repo(permission string) forge.Repo {
	out := forge.Repo{
		FullName:    r.FullName,
		URL:         r.Links.HTML.Href,
		Private:     r.IsPrivate,
		Language:    r.Language,
		Permissions: permissions(permission),
	}
	if r.Mainbranch != nil {
		out.DefaultBranch = r.Mainbranch.Name
	}
	for _, cl := range r.Links.Clone {
		if cl.Name == "https" {
			out.CloneURL = withoutUser(cl.Href)
			break
		}
	}
	return out
}

// withoutUser drops the user Bitbucket puts in its https clone links
// ("https://alice@bitbucket.org/ws/repo.git").
func withoutUser(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = nil
	return u.String()
}

// permissions maps Bitbucket's repository permission onto Runnel's.
func permissions(p string) forge.Permissions {
	switch p {
	case "admin":
		return forge.Permissions{Pull: true, Push: true, Admin: true}
	case "write":
		return forge.Permissions{Pull: true, Push: true}
	}
	return forge.Permissions{Pull: true}
}

// page is Bitbucket's paginated answer.
type page[T any] struct {
	Values  []T    `json:"values"`
	Page    int    `json:"page"`
	Pagelen int    `json:"pagelen"`
	Next    string `json:"next"`
}

// sameBase checks that a URL Bitbucket gave (a next page) is on the API
// base: the same scheme and host, under the base's path. Runnel sends its
// token to no other place.
func sameBase(c forge.Conn, a *forge.Answer, raw string) (*url.URL, error) {
	b, err := url.Parse(base(c))
	if err != nil {
		return nil, fmt.Errorf("forge: %s: API base is not a URL: %w", forge.KindBitbucket, err)
	}
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, b.Scheme) || !strings.EqualFold(u.Host, b.Host) ||
		u.User != nil || !strings.HasPrefix(u.Path, strings.TrimRight(b.Path, "/")+"/") {
		shown := []rune(safeurl.Redact(raw))
		if len(shown) > 200 {
			shown = append(shown[:200], '…')
		}
		return nil, forge.Scrub(a.Errorf("the next page %q is not on the API base", string(shown)), c.Token)
	}
	return u, nil
}

// nextPage reads the page number of a next link ("" → 0: no next page).
func nextPage(c forge.Conn, a *forge.Answer, next string) (int, error) {
	if next == "" {
		return 0, nil
	}
	u, err := sameBase(c, a, next)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(u.Query().Get("page"))
	if err != nil || n <= 0 {
		return 0, a.Errorf("the next page link has no page number")
	}
	return n, nil
}

// Repos implements forge.Host: GET /repositories?role=member by full name,
// o.Search matching the name (BBQL name~"…"), then the account's
// permissions on the page's repositories (GET
// /user/permissions/repositories, one request for the page, filtered by
// full names joined with OR).
func (Forge) Repos(ctx context.Context, c forge.Conn, o forge.ListOptions) (*forge.RepoPage, error) {
	q := url.Values{}
	q.Set("role", "member")
	q.Set("pagelen", strconv.Itoa(forge.PageSize(o, maxPerPage)))
	q.Set("page", strconv.Itoa(max(o.Page, 1)))
	q.Set("sort", "full_name")
	if s := strings.TrimSpace(o.Search); s != "" {
		q.Set("q", "name~"+quote(s))
	}
	var p page[repository]
	a, err := forge.JSON(ctx, c, forge.KindBitbucket, http.MethodGet, endpoint(c, "/repositories?"+q.Encode()), auth(c), nil, &p)
	if err != nil {
		return nil, err
	}
	next, err := nextPage(c, a, p.Next)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(p.Values))
	for i := range p.Values {
		if p.Values[i].FullName == "" {
			return nil, a.Errorf("a repository in the response lacks its full_name")
		}
		names = append(names, p.Values[i].FullName)
	}
	perms, err := permissionsOf(ctx, c, names)
	if err != nil {
		return nil, err
	}
	out := &forge.RepoPage{Repos: make([]forge.Repo, 0, len(p.Values)), Next: next}
	for i := range p.Values {
		out.Repos = append(out.Repos, p.Values[i].repo(perms[strings.ToLower(p.Values[i].FullName)]))
	}
	return out, nil
}

// permissionsOf is the account's permission on each repository named
// (keyed by the lower-cased full name), from GET
// /user/permissions/repositories filtered by
// repository.full_name="a" OR repository.full_name="b"…
func permissionsOf(ctx context.Context, c forge.Conn, names []string) (map[string]string, error) {
	out := make(map[string]string, len(names))
	var filter strings.Builder
	flush := func() error {
		if filter.Len() == 0 {
			return nil
		}
		q := url.Values{}
		q.Set("pagelen", strconv.Itoa(maxPerPage))
		q.Set("q", filter.String())
		filter.Reset()
		return permissionPages(ctx, c, endpoint(c, "/user/permissions/repositories?"+q.Encode()), out)
	}
	for _, n := range names {
		term := "repository.full_name=" + quote(n)
		if filter.Len() > 0 && filter.Len()+len(" OR ")+len(term) > maxFilter {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		if filter.Len() > 0 {
			filter.WriteString(" OR ")
		}
		filter.WriteString(term)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// permissionPages reads a permissions list from u, following its next
// links on the API base.
func permissionPages(ctx context.Context, c forge.Conn, u string, out map[string]string) error {
	for i := 0; u != "" && i < maxPermPages; i++ {
		var p page[struct {
			Permission string `json:"permission"`
			Repository struct {
				FullName string `json:"full_name"`
			} `json:"repository"`
		}]
		a, err := forge.JSON(ctx, c, forge.KindBitbucket, http.MethodGet, u, auth(c), nil, &p)
		if err != nil {
			return err
		}
		for _, v := range p.Values {
			if v.Repository.FullName != "" {
				out[strings.ToLower(v.Repository.FullName)] = v.Permission
			}
		}
		u = ""
		if p.Next != "" {
			nu, err := sameBase(c, a, p.Next)
			if err != nil {
				return err
			}
			u = nu.String()
		}
	}
	return nil
}

// Repo implements forge.Host: GET /repositories/{workspace}/{slug} and the
// account's permission on it.
func (Forge) Repo(ctx context.Context, c forge.Conn, fullName string) (*forge.Repo, error) {
	path, err := repoPath(fullName)
	if err != nil {
		return nil, err
	}
	var r repository
	a, err := forge.JSON(ctx, c, forge.KindBitbucket, http.MethodGet, endpoint(c, path), auth(c), nil, &r)
	if err != nil {
		return nil, err
	}
	if r.FullName == "" {
		return nil, a.Errorf("response lacks the repository's full_name")
	}
	perms, err := permissionsOf(ctx, c, []string{r.FullName})
	if err != nil {
		return nil, err
	}
	out := r.repo(perms[strings.ToLower(r.FullName)])
	return &out, nil
}

// hook is Bitbucket's webhook subscription.
type hook struct {
	UUID   string   `json:"uuid"`
	URL    string   `json:"url"`
	Active bool     `json:"active"`
	Events []string `json:"events"`
}

func (h *hook) hook() *forge.Hook {
	events := h.Events
	if events == nil {
		events = []string{}
	}
	return &forge.Hook{ID: h.UUID, URL: h.URL, Events: events, Active: h.Active}
}

// hookPayload creates a webhook. Bitbucket signs each delivery with secret
// (X-Hub-Signature, see Verify) and never shows it again.
type hookPayload struct {
	Description          string   `json:"description"`
	URL                  string   `json:"url"`
	Active               bool     `json:"active"`
	Secret               string   `json:"secret,omitempty"`
	Events               []string `json:"events"`
	SkipCertVerification bool     `json:"skip_cert_verification,omitempty"`
}

// hookPath is the path of a webhook; its id is the hook's UUID, braces
// included, escaped.
func hookPath(fullName, id string) (string, error) {
	path, err := repoPath(fullName)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(id) == "" {
		return "", fmt.Errorf("forge: %s: the hook id is empty", forge.KindBitbucket)
	}
	return path + "/hooks/" + url.PathEscape(id), nil
}

// CreateHook implements forge.Host: POST
// /repositories/{workspace}/{slug}/hooks (admin permission is needed). The
// hook's id is its UUID.
func (Forge) CreateHook(ctx context.Context, c forge.Conn, fullName string, s forge.HookSpec) (*forge.Hook, error) {
	path, err := repoPath(fullName)
	if err != nil {
		return nil, err
	}
	payload := hookPayload{
		Description: forge.HookRunnelDescription, URL: s.URL, Active: true, Secret: s.Secret,
		Events: hookEvents, SkipCertVerification: s.InsecureSSL,
	}
	var h hook
	a, err := forge.JSON(ctx, c, forge.KindBitbucket, http.MethodPost, endpoint(c, path+"/hooks"), auth(c), payload, &h)
	if err != nil {
		return nil, err
	}
	if h.UUID == "" {
		return nil, a.Errorf("response lacks the hook's uuid")
	}
	return h.hook(), nil
}

// Hook implements forge.Host: GET /repositories/{workspace}/{slug}/hooks/{uuid}.
func (Forge) Hook(ctx context.Context, c forge.Conn, fullName, id string) (*forge.Hook, error) {
	path, err := hookPath(fullName, id)
	if err != nil {
		return nil, err
	}
	var h hook
	a, err := forge.JSON(ctx, c, forge.KindBitbucket, http.MethodGet, endpoint(c, path), auth(c), nil, &h)
	if err != nil {
		return nil, err
	}
	if h.UUID == "" {
		return nil, a.Errorf("response lacks the hook's uuid")
	}
	return h.hook(), nil
}

// DeleteHook implements forge.Host: DELETE
// /repositories/{workspace}/{slug}/hooks/{uuid}; a hook (or repository)
// already gone is no error.
func (Forge) DeleteHook(ctx context.Context, c forge.Conn, fullName, id string) error {
	path, err := hookPath(fullName, id)
	if err != nil {
		return err
	}
	_, err = forge.Call(ctx, c, forge.KindBitbucket, http.MethodDelete, endpoint(c, path), auth(c), nil)
	if errors.Is(err, forge.ErrGone) {
		return nil
	}
	return err
}

// states maps Runnel's status states onto Bitbucket's (INPROGRESS,
// SUCCESSFUL, FAILED, STOPPED).
var states = map[string]string{
	forge.StatusPending:   "INPROGRESS",
	forge.StatusRunning:   "INPROGRESS",
	forge.StatusSuccess:   "SUCCESSFUL",
	forge.StatusFailure:   "FAILED",
	forge.StatusError:     "FAILED",
	forge.StatusCancelled: "STOPPED",
}

// statusPayload is a build status.
type statusPayload struct {
	Key         string `json:"key"`
	State       string `json:"state"`
	Name        string `json:"name"`
	URL         string `json:"url"`
	Description string `json:"description,omitempty"`
}

// statusKey is the key of a context's status: the context itself when
// Bitbucket takes it (40 bytes at most), else "runnel-" and a digest of
// it, the same for the same context so each post updates one status.
func statusKey(name string) string {
	if len(name) <= maxKey {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	const prefix = "runnel-"
	return prefix + hex.EncodeToString(sum[:])[:maxKey-len(prefix)]
}

// SetStatus implements forge.Host: POST
// /repositories/{workspace}/{slug}/commit/{sha}/statuses/build. A status
// with the same key replaces the one before; Bitbucket requires a URL.
func (Forge) SetStatus(ctx context.Context, c forge.Conn, fullName, sha string, s forge.CommitStatus) error {
	state, ok := states[s.State]
	if !ok {
		return fmt.Errorf("forge: %s: unknown commit status state %q", forge.KindBitbucket, s.State)
	}
	if s.Context == "" {
		return fmt.Errorf("forge: %s: the commit status has no context", forge.KindBitbucket)
	}
	if s.TargetURL == "" {
		return fmt.Errorf("forge: %s: Bitbucket requires a URL for a commit status; the status %q has none", forge.KindBitbucket, s.Context)
	}
	if sha == "" {
		return fmt.Errorf("forge: %s: the commit is empty", forge.KindBitbucket)
	}
	path, err := repoPath(fullName)
	if err != nil {
		return err
	}
	payload := statusPayload{Key: statusKey(s.Context), State: state, Name: s.Context, URL: s.TargetURL, Description: s.Description}
	_, err = forge.Call(ctx, c, forge.KindBitbucket, http.MethodPost,
		endpoint(c, path+"/commit/"+url.PathEscape(sha)+"/statuses/build"), auth(c), payload)
	return err
}

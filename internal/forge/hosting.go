package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/runnel-ci/runnel/internal/safeurl"
)

// KindBitbucket is Bitbucket Cloud.
const KindBitbucket = "bitbucket"

// Host is a forge's REST API used on behalf of a connected account: who the
// account is, the repositories it reaches, the webhooks Runnel manages on
// them and the statuses it reports on their commits. Every method takes the
// Conn to call with; errors are *Error for an answer the forge refused
// (matching ErrTokenRejected, ErrRateLimited, ErrGone with errors.Is), and
// never carry the token.
type Host interface {
	Forge
	// APIBase is the API's base URL for a forge at host (scheme http or
	// https): what Conn.Base is when no API URL is configured.
	APIBase(scheme, host string) string
	// Account is the user the token belongs to.
	Account(ctx context.Context, c Conn) (*Account, error)
	// Repos lists the repositories the account may read, a page at a time
	// in the forge's order; o.Search filters by name where the forge can.
	Repos(ctx context.Context, c Conn, o ListOptions) (*RepoPage, error)
	// Repo reads one repository by its full name ("owner/name", GitLab's
	// "group/sub/name", Bitbucket's "workspace/slug"); ErrGone when the
	// account cannot see it.
	Repo(ctx context.Context, c Conn, fullName string) (*Repo, error)
	// CreateHook creates a webhook sending push, tag and pull request
	// events, signed with h.Secret, to h.URL.
	CreateHook(ctx context.Context, c Conn, fullName string, h HookSpec) (*Hook, error)
	// Hook reads a webhook by id; ErrGone when it no longer exists.
	Hook(ctx context.Context, c Conn, fullName, id string) (*Hook, error)
	// DeleteHook removes a webhook; one already gone is not an error.
	DeleteHook(ctx context.Context, c Conn, fullName, id string) error
	// SetStatus reports a status on a commit.
	SetStatus(ctx context.Context, c Conn, fullName, sha string, s CommitStatus) error
}

// Conn is how a Host is called: the API's base URL (no trailing slash), the
// account's access token, and the client to send with (nil: one that
// follows no redirect).
type Conn struct {
	Base  string
	Token string
	HC    *http.Client
}

// Account is a forge user.
type Account struct {
	// ID is the forge's stable id of the user (numeric, or Bitbucket's
	// UUID).
	ID        string
	Login     string
	Name      string
	AvatarURL string
}

// Permissions are what an account may do on a repository.
type Permissions struct {
	Pull  bool `json:"pull"`
	Push  bool `json:"push"`
	Admin bool `json:"admin"`
}

// Repo is a repository as a forge lists it.
type Repo struct {
	FullName      string      `json:"fullName"`
	URL           string      `json:"url"`
	CloneURL      string      `json:"cloneUrl"`
	DefaultBranch string      `json:"defaultBranch"`
	Private       bool        `json:"private"`
	Permissions   Permissions `json:"permissions"`
	Language      string      `json:"language"`
}

// ListOptions page a repository list. Page counts from 1; PerPage is capped
// by the forge (100 on GitHub, GitLab, Bitbucket; 50 on Gitea).
type ListOptions struct {
	Search  string
	Page    int
	PerPage int
}

// RepoPage is one page of repositories; Next is the next page's number (0:
// this is the last).
type RepoPage struct {
	Repos []Repo
	Next  int
}

// HookSpec is a webhook to create.
type HookSpec struct {
	URL    string
	Secret string
	// InsecureSSL accepts the receiving server's certificate unchecked
	// (only for a test forge talking to a self-signed Runnel).
	InsecureSSL bool
}

// Hook is a webhook as the forge has it.
type Hook struct {
	ID     string
	URL    string
	Events []string
	Active bool
}

// Commit status states, Runnel's words; each forge maps them onto its own.
const (
	StatusPending   = "pending"
	StatusRunning   = "running"
	StatusSuccess   = "success"
	StatusFailure   = "failure"
	StatusError     = "error"
	StatusCancelled = "cancelled"
)

// CommitStatus is what a run reports on its commit.
type CommitStatus struct {
	State       string
	Context     string
	Description string
	TargetURL   string
}

// Errors a Host's answers are matched against with errors.Is.
var (
	// ErrTokenRejected: the forge refused the token (401): expired, revoked
	// or never valid.
	ErrTokenRejected = errors.New("forge: the access token was refused")
	// ErrRateLimited: the forge's rate limit is used up (429, or 403 with
	// the limit's headers); Error.RetryAfter says when to try again.
	ErrRateLimited = errors.New("forge: rate limit exceeded")
	// ErrGone: the resource does not exist, or the account cannot see it
	// (404, 410).
	ErrGone = errors.New("forge: not found")
	// ErrForbidden: the account may not do this (403 other than a rate
	// limit): a missing permission or scope.
	ErrForbidden = errors.New("forge: forbidden")
)

// Call sends method to endpoint with header (the forge's authentication)
// and payload as JSON (nil: no body), and returns a 2xx answer with its
// headers. Any other status is an *Error. Redirects are not followed when
// hc is nil. The token never appears in what is returned.
func Call(ctx context.Context, c Conn, kind, method, endpoint string, header http.Header, payload any) (*Answer, error) {
	a, err := call(ctx, c.HC, kind, method, endpoint, header, payload, c.Token, nil)
	if err != nil {
		return nil, Scrub(err, c.Token)
	}
	return a, nil
}

// JSON is Call decoding the answer into v (nil: the body is ignored).
func JSON(ctx context.Context, c Conn, kind, method, endpoint string, header http.Header, payload, v any) (*Answer, error) {
	a, err := Call(ctx, c, kind, method, endpoint, header, payload)
	if err != nil {
		return nil, err
	}
	if v != nil && len(bytes.TrimSpace(a.Body)) > 0 {
		if err := json.Unmarshal(a.Body, v); err != nil {
			return nil, a.Errorf("response is not the JSON the forge documents: %v", err)
		}
	}
	return a, nil
}

func call(ctx context.Context, hc *http.Client, kind, method, endpoint string, header http.Header, payload any, token string,
	exists func(status int, msg string, details []string) bool) (*Answer, error) {
	if header == nil {
		header = http.Header{}
	}
	header.Set("User-Agent", userAgent)
	if header.Get("Accept") == "" {
		header.Set("Accept", "application/json")
	}
	var body io.Reader
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("forge: %s: encoding request: %w", kind, err)
		}
		header.Set("Content-Type", "application/json")
		body = bytes.NewReader(b)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if hc == nil {
		hc = noRedirectClient
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
			defer cancel()
		}
	}
	shownURL := safeurl.Redact(endpoint)
	req, err := http.NewRequestWithContext(ctx, method, endpoint, body)
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return nil, fmt.Errorf("forge: %s: %s %s: %v", kind, method, shownURL, err)
	}
	req.Header = header
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("forge: %s: %s %s: %w", kind, method, shownURL, err)
	}
	defer resp.Body.Close()
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	// Drain a little more so the connection can be reused; never much.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{Kind: kind, Method: method, URL: shownURL, StatusCode: resp.StatusCode, Status: statusText(resp)}
		msg, details := forgeMessage(raw)
		if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
			if loc := resp.Header.Get("Location"); loc != "" {
				msg = joinMsg("redirect to "+safeurl.Redact(loc)+" not followed", msg)
			}
		}
		e.Message = truncate(redact(msg, token), MaxMessageBytes)
		e.alreadyExists = exists != nil && exists(resp.StatusCode, msg, details)
		e.rateLimited, e.RetryAfter = rateLimit(resp, time.Now())
		return nil, e
	}
	a := &Answer{Body: raw, Header: resp.Header, kind: kind, method: method, shownURL: shownURL, status: statusText(resp), token: token}
	if readErr != nil {
		return nil, a.Errorf("reading response: %w", readErr)
	}
	if len(raw) > MaxResponseBytes {
		return nil, a.Errorf("response larger than %d bytes", MaxResponseBytes)
	}
	return a, nil
}

// rateLimit reads whether an answer is a rate limit and when to retry: 429
// always is; 403 is when the forge says the limit is used up
// (X-RateLimit-Remaining: 0, or a Retry-After). The wait comes from
// Retry-After (seconds or a date), else the reset time (X-RateLimit-Reset or
// RateLimit-Reset, Unix seconds).
func rateLimit(resp *http.Response, now time.Time) (bool, time.Duration) {
	h := resp.Header
	retry := h.Get("Retry-After")
	remaining := FirstHeader(h, "X-RateLimit-Remaining", "RateLimit-Remaining")
	limited := resp.StatusCode == http.StatusTooManyRequests ||
		(resp.StatusCode == http.StatusForbidden && (remaining == "0" || retry != ""))
	if !limited {
		return false, 0
	}
	if retry != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(retry)); err == nil && n >= 0 {
			return true, time.Duration(n) * time.Second
		}
		if t, err := http.ParseTime(retry); err == nil {
			return true, max(t.Sub(now), 0)
		}
	}
	if reset := FirstHeader(h, "X-RateLimit-Reset", "RateLimit-Reset"); reset != "" {
		if n, err := strconv.ParseInt(reset, 10, 64); err == nil && n > 0 {
			return true, max(time.Unix(n, 0).Sub(now), 0)
		}
	}
	return true, 0
}

// Paged reads the next page number from an answer's Link header
// (rel="next", with the page query parameter) or, failing that, GitLab's
// X-Next-Page header; 0 when there is none.
func Paged(a *Answer) int {
	if n := strings.TrimSpace(a.Header.Get("X-Next-Page")); n != "" {
		v, _ := strconv.Atoi(n)
		return v
	}
	for _, part := range strings.Split(a.Header.Get("Link"), ",") {
		segs := strings.Split(part, ";")
		if len(segs) < 2 {
			continue
		}
		next := false
		for _, s := range segs[1:] {
			if strings.ReplaceAll(strings.TrimSpace(s), " ", "") == `rel="next"` {
				next = true
			}
		}
		if !next {
			continue
		}
		u, err := url.Parse(strings.Trim(strings.TrimSpace(segs[0]), "<>"))
		if err != nil {
			continue
		}
		if v, err := strconv.Atoi(u.Query().Get("page")); err == nil {
			return v
		}
	}
	return 0
}

// PageSize is o.PerPage bounded to (0, limit], limit when unset.
func PageSize(o ListOptions, limit int) int {
	if o.PerPage <= 0 || o.PerPage > limit {
		return limit
	}
	return o.PerPage
}

// PathEscapeRepo escapes each segment of a full name for a URL path
// ("owner/name" stays two segments).
func PathEscapeRepo(fullName string) string {
	parts := strings.Split(fullName, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// HookRunnelDescription names Runnel's hooks on forges that show one.
const HookRunnelDescription = "Runnel"

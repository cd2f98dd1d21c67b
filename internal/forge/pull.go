package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/runnel-ci/runnel/internal/safeurl"
)

// Supported forge kinds.
const (
	KindGitHub = "github"
	KindGitLab = "gitlab"
	KindGitea  = "gitea"
)

const (
	// MaxResponseBytes bounds how much of a response body is read.
	MaxResponseBytes = 1 << 20
	// MaxMessageBytes bounds the forge message quoted in an error.
	MaxMessageBytes = 512
	// defaultTimeout applies when Open supplies its own client and ctx has
	// no deadline.
	defaultTimeout = 30 * time.Second
	// redacted replaces the token wherever it would otherwise show up.
	redacted  = "[REDACTED]"
	userAgent = "runnel"
)

// ErrAlreadyExists is matched (with errors.Is) by the error Open returns
// when the forge clearly reports that an open pull/merge request for the
// same head and base already exists (GitHub 422 "A pull request already
// exists…", GitLab 409, Gitea 409). Open still returns it as an error.
var ErrAlreadyExists = errors.New("forge: pull request already exists")

// Request describes the pull/merge request to open.
type Request struct {
	Kind    string // github | gitlab | gitea
	APIURL  string // API base; "" → derived from RepoURL (see APIBase)
	RepoURL string // the repository's clone URL (https, ssh:// or scp-like git@host:owner/name.git)
	Token   string // access token
	Head    string // source branch (already pushed)
	Base    string // target branch
	Title   string
	Body    string
}

// PullRequest is an opened pull/merge request.
type PullRequest struct {
	Number int64  // GitHub/Gitea number, GitLab iid
	URL    string // the web URL (GitHub/Gitea html_url, GitLab web_url)
}

// Error is returned by Open when the forge answers with an unexpected HTTP
// status. It never contains the access token.
type Error struct {
	Kind       string // github | gitlab | gitea
	Method     string // HTTP method
	URL        string // request URL, without credentials
	StatusCode int    // HTTP status code
	Status     string // HTTP status line, e.g. "422 Unprocessable Entity"
	Message    string // the forge's message, bounded to ~512 bytes
	// RetryAfter is how long a rate limit says to wait (0: unknown or
	// not a rate limit).
	RetryAfter time.Duration

	alreadyExists bool
	rateLimited   bool
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "forge: %s: %s %s: HTTP %s", e.Kind, e.Method, e.URL, e.Status)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is matches ErrAlreadyExists when the forge said that the pull/merge
// request already exists, ErrRateLimited for a rate limit, ErrTokenRejected
// for 401, ErrForbidden for another 403, ErrGone for 404 and 410.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrAlreadyExists:
		return e.alreadyExists
	case ErrRateLimited:
		return e.rateLimited
	case ErrTokenRejected:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden && !e.rateLimited
	case ErrGone:
		return e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusGone
	}
	return false
}

// noRedirectClient is used when Open is called with a nil client: it never
// follows redirects, so the POST (and its credentials) is not replayed to
// another location.
var noRedirectClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Answer is a 2xx answer of the forge to Post.
type Answer struct {
	Body                                  []byte
	Header                                http.Header
	kind, method, shownURL, status, token string
}

// Errorf is an error about the answer, worded as every forge error is
// ("forge: KIND: POST URL: HTTP STATUS: …").
func (a *Answer) Errorf(format string, args ...any) error {
	return fmt.Errorf("forge: %s: %s %s: HTTP %s: "+format, append([]any{a.kind, a.method, a.shownURL, a.status}, args...)...)
}

// PullRequest checks what an implementation read from the answer: a
// request without a number or web URL is an error that quotes the answer.
func (a *Answer) PullRequest(number int64, webURL string) (*PullRequest, error) {
	if number <= 0 || webURL == "" {
		return nil, fmt.Errorf("forge: %s: %s %s: HTTP %s: response lacks the request number or web URL: %s",
			a.kind, a.method, a.shownURL, a.status, truncate(redact(compact(a.Body), a.token), MaxMessageBytes))
	}
	return &PullRequest{Number: number, URL: webURL}, nil
}

// Post sends payload as JSON to endpoint with header (the forge's
// authentication) and returns a 2xx answer. Any other status is an *Error
// carrying the forge's message, matching ErrAlreadyExists when exists says
// the message means it. hc nil is a client that follows no redirect, with a
// 30s timeout when ctx has none. The token is never in what is returned
// (callers Scrub errors too).
func Post(ctx context.Context, hc *http.Client, kind, endpoint string, header http.Header, payload any, token string,
	exists func(status int, msg string, details []string) bool) (*Answer, error) {
	return call(ctx, hc, kind, http.MethodPost, endpoint, header, payload, token, exists)
}

// RepoPath splits a clone URL into its host and repository path, without a
// trailing ".git". The path is "owner/name"; for GitLab nested groups it is
// kept whole ("group/sub/name").
//
// Accepted forms: http(s)://[user@]host[:port]/owner/name(.git),
// ssh://[user@]host[:port]/owner/name(.git) and scp-like
// [user@]host:owner/name(.git). For http(s) the host keeps its port; for ssh
// the port (an ssh port, not an HTTP one) is dropped. Credentials in the URL
// are never returned nor quoted in errors.
func RepoPath(repoURL string) (host, path string, err error) {
	s := strings.TrimSpace(repoURL)
	if s == "" {
		return "", "", errors.New("repository URL is empty")
	}
	shown := safeurl.Redact(s)
	var rawPath string
	if scheme, _, ok := strings.Cut(s, "://"); ok {
		u, perr := url.Parse(s)
		if perr != nil {
			return "", "", fmt.Errorf("repository URL %q is not a valid URL", shown)
		}
		switch strings.ToLower(scheme) {
		case "http", "https":
			host = u.Host
		case "ssh", "git+ssh", "ssh+git":
			host = u.Hostname()
			if strings.Contains(host, ":") { // IPv6 literal
				host = "[" + host + "]"
			}
		default:
			return "", "", fmt.Errorf("repository URL %q: unsupported scheme %q (want http, https or ssh)", shown, scheme)
		}
		if u.Hostname() == "" {
			return "", "", fmt.Errorf("repository URL %q has no host", shown)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return "", "", fmt.Errorf("repository URL %q must not have a query or fragment", shown)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
				return "", "", fmt.Errorf("repository URL %q has an invalid port", shown)
			}
		}
		rawPath = u.Path
	} else {
		// scp-like: [user@]host:path
		colon := strings.IndexByte(s, ':')
		slash := strings.IndexByte(s, '/')
		if colon < 0 || (slash >= 0 && slash < colon) {
			return "", "", fmt.Errorf("repository URL %q is neither a URL nor scp-like user@host:path", shown)
		}
		host = s[:colon]
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			host = host[at+1:]
		}
		rawPath = s[colon+1:]
		if host == "" || !validHost(host) {
			return "", "", fmt.Errorf("repository URL %q has no valid host", shown)
		}
	}
	p := strings.Trim(rawPath, "/")
	p = strings.TrimSuffix(p, ".git")
	parts := strings.Split(p, "/")
	if len(parts) < 2 {
		return "", "", fmt.Errorf("repository URL %q: path must be owner/name", shown)
	}
	for _, seg := range parts {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, " \t\r\n\\") {
			return "", "", fmt.Errorf("repository URL %q: invalid path %q", shown, p)
		}
	}
	return host, p, nil
}

func validHost(h string) bool {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		return net.ParseIP(h[1:len(h)-1]) != nil
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
		default:
			return false
		}
	}
	return true
}

// redact replaces every occurrence of token in s.
func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, redacted)
}

// Scrub guarantees the token does not appear in err's text.
func Scrub(err error, token string) error {
	if token == "" || !strings.Contains(err.Error(), token) {
		return err
	}
	var fe *Error
	if errors.As(err, &fe) && fe == err {
		c := *fe
		c.URL = redact(c.URL, token)
		c.Message = redact(c.Message, token)
		c.Status = redact(c.Status, token)
		if !strings.Contains(c.Error(), token) {
			return &c
		}
	}
	return redactedError{msg: redact(err.Error(), token), err: err}
}

// redactedError carries a scrubbed message while keeping errors.Is/As
// working on the original chain (e.g. context.DeadlineExceeded).
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

func statusText(resp *http.Response) string {
	if resp.Status != "" {
		return resp.Status
	}
	return strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
}

// forgeMessage extracts a human readable message from an error body. The
// forges answer {"message": ...} (GitHub, Gitea, GitLab; GitLab's may be a
// list or an object of field errors), {"error": ...} (GitLab) and
// "errors": [...] (GitHub objects with "message"/"code"/"field", Gitea
// strings). Non-JSON bodies are returned compacted. details holds the
// individual error texts for the already-exists check.
func forgeMessage(raw []byte) (msg string, details []string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", nil
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return compact(raw), nil
	}
	var parts []string
	if m, ok := obj["message"]; ok {
		details = append(details, flatten(m)...)
		if s := strings.Join(flatten(m), "; "); s != "" {
			parts = append(parts, s)
		}
	}
	if m, ok := obj["error"]; ok {
		details = append(details, flatten(m)...)
		if s := strings.Join(flatten(m), "; "); s != "" {
			parts = append(parts, s)
		}
	}
	if m, ok := obj["error_description"]; ok {
		if s := strings.Join(flatten(m), "; "); s != "" {
			parts = append(parts, s)
		}
	}
	if errs, ok := obj["errors"].([]any); ok {
		var es []string
		for _, e := range errs {
			switch v := e.(type) {
			case map[string]any:
				if m, ok := v["message"].(string); ok && m != "" {
					es = append(es, m)
					continue
				}
				var bits []string
				for _, k := range []string{"resource", "field", "code"} {
					if s, ok := v[k].(string); ok && s != "" {
						bits = append(bits, k+"="+s)
					}
				}
				if len(bits) > 0 {
					es = append(es, strings.Join(bits, " "))
				}
			default:
				es = append(es, flatten(v)...)
			}
		}
		details = append(details, es...)
		if len(es) > 0 {
			parts = append(parts, strings.Join(es, "; "))
		}
	}
	if len(parts) == 0 {
		return compact(raw), details
	}
	return strings.Join(parts, ": "), details
}

// flatten turns a JSON message value (string, list, or object of field →
// messages) into strings.
func flatten(v any) []string {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		if x = strings.TrimSpace(x); x != "" {
			return []string{x}
		}
		return nil
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, flatten(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, k := range sortedKeys(x) {
			for _, s := range flatten(x[k]) {
				out = append(out, k+" "+s)
			}
		}
		return out
	default:
		b, _ := json.Marshal(x)
		return []string{string(b)}
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// small maps; insertion sort keeps the import list short
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// compact collapses whitespace (including newlines) in a non-JSON body.
func compact(b []byte) string {
	return strings.Join(strings.Fields(string(b)), " ")
}

func joinMsg(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ": " + b
}

// truncate bounds s to about n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Package forge opens pull requests (GitHub, Gitea) and merge requests
// (GitLab) through the forges' REST APIs.
//
// Runnel uses it when a pipeline definition is saved with saveMode "pr": the
// change is pushed to a new branch first, then [Open] asks the forge to open a
// request from that branch into the target branch and returns its web URL.
//
// Only the standard library is used. Tokens never appear in returned errors,
// response bodies are read with a size limit, and redirects of the POST are
// not followed when the package supplies its own HTTP client.
package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	// maxResponseBytes bounds how much of a response body is read.
	maxResponseBytes = 1 << 20
	// maxMessageBytes bounds the forge message quoted in an error.
	maxMessageBytes = 512
	// defaultTimeout applies when Open supplies its own client and ctx has
	// no deadline.
	defaultTimeout = 30 * time.Second
	// redacted replaces the token wherever it would otherwise show up.
	redacted  = "[REDACTED]"
	userAgent = "runnel"
)

// supportedKinds is used in error messages.
const supportedKinds = "github, gitlab, gitea"

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

	alreadyExists bool
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

// Is reports whether target is ErrAlreadyExists and the forge said that the
// pull/merge request already exists.
func (e *Error) Is(target error) bool {
	return target == ErrAlreadyExists && e.alreadyExists
}

// noRedirectClient is used when Open is called with a nil client: it never
// follows redirects, so the POST (and its credentials) is not replayed to
// another location.
var noRedirectClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Open opens the pull/merge request described by r and returns its number
// and web URL.
//
// hc is the HTTP client to use; nil means a client like http.DefaultClient
// that does not follow redirects, with a 30s timeout (through the context)
// when ctx has no deadline.
//
// An already existing open request for the same head and base is reported as
// an error matching ErrAlreadyExists when the forge says so clearly; any
// other non-2xx answer is returned as an *Error carrying the forge's message.
func Open(ctx context.Context, hc *http.Client, r Request) (*PullRequest, error) {
	pr, err := open(ctx, hc, r)
	if err != nil {
		return nil, scrub(err, r.Token)
	}
	return pr, nil
}

func open(ctx context.Context, hc *http.Client, r Request) (*PullRequest, error) {
	kind, err := normalizeKind(r.Kind)
	if err != nil {
		return nil, err
	}
	if err := validate(kind, r); err != nil {
		return nil, err
	}
	_, repoPath, err := RepoPath(r.RepoURL)
	if err != nil {
		return nil, fmt.Errorf("forge: %s: %w", kind, err)
	}
	base, err := apiBase(kind, r)
	if err != nil {
		return nil, err
	}

	var (
		endpoint string
		payload  any
		header   = http.Header{}
	)
	switch kind {
	case KindGitHub, KindGitea:
		parts := strings.Split(repoPath, "/")
		if len(parts) != 2 {
			return nil, fmt.Errorf("forge: %s: repository path %q must be owner/name", kind, repoPath)
		}
		endpoint = base + "/repos/" + url.PathEscape(parts[0]) + "/" + url.PathEscape(parts[1]) + "/pulls"
		payload = pullPayload{Title: r.Title, Head: r.Head, Base: r.Base, Body: r.Body}
		if kind == KindGitHub {
			header.Set("Authorization", "Bearer "+r.Token)
			header.Set("Accept", "application/vnd.github+json")
			header.Set("X-GitHub-Api-Version", "2022-11-28")
		} else {
			header.Set("Authorization", "token "+r.Token)
			header.Set("Accept", "application/json")
		}
	case KindGitLab:
		endpoint = base + "/projects/" + url.PathEscape(repoPath) + "/merge_requests"
		payload = mergePayload{SourceBranch: r.Head, TargetBranch: r.Base, Title: r.Title, Description: r.Body}
		header.Set("PRIVATE-TOKEN", r.Token)
		header.Set("Accept", "application/json")
	}
	header.Set("Content-Type", "application/json")
	header.Set("User-Agent", userAgent)

	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("forge: %s: encoding request: %w", kind, err)
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

	const method = http.MethodPost
	shownURL := safeurl.Redact(endpoint)
	req, err := http.NewRequestWithContext(ctx, method, endpoint, bytes.NewReader(body))
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
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	// Drain a little more so the connection can be reused; never much.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{
			Kind:       kind,
			Method:     method,
			URL:        shownURL,
			StatusCode: resp.StatusCode,
			Status:     statusText(resp),
		}
		msg, details := forgeMessage(raw)
		if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
			if loc := resp.Header.Get("Location"); loc != "" {
				msg = joinMsg("redirect to "+safeurl.Redact(loc)+" not followed", msg)
			}
		}
		e.Message = truncate(redact(msg, r.Token), maxMessageBytes)
		e.alreadyExists = alreadyExists(kind, resp.StatusCode, msg, details)
		return nil, e
	}
	if readErr != nil {
		return nil, fmt.Errorf("forge: %s: %s %s: HTTP %s: reading response: %w", kind, method, shownURL, statusText(resp), readErr)
	}
	if len(raw) > maxResponseBytes {
		return nil, fmt.Errorf("forge: %s: %s %s: HTTP %s: response larger than %d bytes", kind, method, shownURL, statusText(resp), maxResponseBytes)
	}

	pr := &PullRequest{}
	switch kind {
	case KindGitHub, KindGitea:
		var out struct {
			Number  int64  `json:"number"`
			HTMLURL string `json:"html_url"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("forge: %s: %s %s: HTTP %s: decoding response: %v", kind, method, shownURL, statusText(resp), err)
		}
		pr.Number, pr.URL = out.Number, out.HTMLURL
	case KindGitLab:
		var out struct {
			IID    int64  `json:"iid"`
			WebURL string `json:"web_url"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("forge: %s: %s %s: HTTP %s: decoding response: %v", kind, method, shownURL, statusText(resp), err)
		}
		pr.Number, pr.URL = out.IID, out.WebURL
	}
	if pr.Number <= 0 || pr.URL == "" {
		return nil, fmt.Errorf("forge: %s: %s %s: HTTP %s: response lacks the request number or web URL: %s",
			kind, method, shownURL, statusText(resp), truncate(redact(compact(raw), r.Token), maxMessageBytes))
	}
	return pr, nil
}

type pullPayload struct {
	Title string `json:"title"`
	Head  string `json:"head"`
	Base  string `json:"base"`
	Body  string `json:"body"`
}

type mergePayload struct {
	SourceBranch string `json:"source_branch"`
	TargetBranch string `json:"target_branch"`
	Title        string `json:"title"`
	Description  string `json:"description"`
}

func normalizeKind(kind string) (string, error) {
	k := strings.ToLower(strings.TrimSpace(kind))
	switch k {
	case KindGitHub, KindGitLab, KindGitea:
		return k, nil
	case "":
		return "", fmt.Errorf("forge: kind is empty (supported: %s)", supportedKinds)
	}
	return "", fmt.Errorf("forge: unsupported kind %q (supported: %s)", kind, supportedKinds)
}

func validate(kind string, r Request) error {
	var missing []string
	if strings.TrimSpace(r.Token) == "" {
		missing = append(missing, "Token")
	}
	if strings.TrimSpace(r.Head) == "" {
		missing = append(missing, "Head")
	}
	if strings.TrimSpace(r.Base) == "" {
		missing = append(missing, "Base")
	}
	if strings.TrimSpace(r.Title) == "" {
		missing = append(missing, "Title")
	}
	if strings.TrimSpace(r.RepoURL) == "" {
		missing = append(missing, "RepoURL")
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("forge: %s: request field %s is empty", kind, missing[0])
	}
	return fmt.Errorf("forge: %s: request fields %s are empty", kind, strings.Join(missing, ", "))
}

// apiBase returns the configured API base (validated, without a trailing
// slash) or the derived one.
func apiBase(kind string, r Request) (string, error) {
	if strings.TrimSpace(r.APIURL) == "" {
		b, err := APIBase(kind, r.RepoURL)
		if err != nil {
			return "", fmt.Errorf("forge: %s: %w", kind, err)
		}
		return b, nil
	}
	b := strings.TrimRight(strings.TrimSpace(r.APIURL), "/")
	u, err := url.Parse(b)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("forge: %s: API URL %q is not an http(s) URL", kind, safeurl.Redact(b))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("forge: %s: API URL %q must not have a query or fragment", kind, safeurl.Redact(b))
	}
	return b, nil
}

// APIBase returns the API base URL for a kind and repository URL when not
// configured:
//
//   - github: https://api.github.com for github.com, https://HOST/api/v3 for
//     other hosts (GitHub Enterprise Server);
//   - gitlab: https://HOST/api/v4;
//   - gitea: https://HOST/api/v1.
//
// An http:// repository URL (e.g. a local test server) keeps http:// and its
// port; for https:// URLs the port is kept too. For ssh and scp-like URLs the
// scheme is https:// and the ssh port is dropped.
func APIBase(kind, repoURL string) (string, error) {
	k, err := normalizeKind(kind)
	if err != nil {
		return "", err
	}
	host, _, err := RepoPath(repoURL)
	if err != nil {
		return "", err
	}
	scheme := "https"
	if s, _, ok := strings.Cut(strings.TrimSpace(repoURL), "://"); ok && strings.EqualFold(s, "http") {
		scheme = "http"
	}
	switch k {
	case KindGitHub:
		if strings.EqualFold(host, "github.com") || strings.EqualFold(host, "www.github.com") {
			return "https://api.github.com", nil
		}
		return scheme + "://" + host + "/api/v3", nil
	case KindGitLab:
		return scheme + "://" + host + "/api/v4", nil
	default: // gitea
		return scheme + "://" + host + "/api/v1", nil
	}
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

// scrub guarantees the token does not appear in err's text.
func scrub(err error, token string) error {
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

func alreadyExists(kind string, status int, msg string, details []string) bool {
	switch kind {
	case KindGitHub:
		if status != http.StatusUnprocessableEntity {
			return false
		}
		for _, d := range details {
			if strings.Contains(strings.ToLower(d), "a pull request already exists") {
				return true
			}
		}
		return false
	case KindGitLab:
		// GitLab documents 409 Conflict for "Another open merge request
		// already exists for this source branch"; the text may be
		// localized, so the status is what counts.
		return status == http.StatusConflict
	case KindGitea:
		return status == http.StatusConflict && strings.Contains(strings.ToLower(msg), "already exists")
	}
	return false
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

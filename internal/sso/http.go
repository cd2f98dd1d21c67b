package sso

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/safeurl"
)

const (
	// maxBody bounds every response body read from a provider.
	maxBody = 1 << 20
	// defaultTimeout bounds each request when the HTTP client has no
	// timeout (go-oidc fetches key sets outside any request's context).
	defaultTimeout = 30 * time.Second
	// maxRedirects bounds redirects followed within an origin.
	maxRedirects = 5
	userAgent    = "runnel"
)

// errTooLarge is a response body over maxBody.
var errTooLarge = errors.New("response body larger than 1 MiB")

// wrapClient is hc as the Client uses it: bodies bounded, redirects only
// within the origin, no cookies, a timeout.
func wrapClient(hc *http.Client) *http.Client {
	c := *hc
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = limitTransport{base: base}
	c.CheckRedirect = sameOrigin
	c.Jar = nil
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	return &c
}

// sameOrigin follows a redirect only to the same scheme and host: neither a
// token nor a code is ever carried elsewhere.
func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	first := via[0].URL
	if req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host) {
		return fmt.Errorf("redirect to %s not followed: only redirects within %s://%s are", safeurl.Origin(req.URL.String()), first.Scheme, first.Host)
	}
	return nil
}

// limitTransport bounds response bodies: reading past maxBody fails.
type limitTransport struct{ base http.RoundTripper }

func (t limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxBody}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// api calls a forge's API with an access token.
type api struct {
	c     *Client
	name  string // the provider's Name
	kind  Kind
	token string
	base  string // the API's base URL
}

// get reads base+path as JSON into v. Errors are runnel.ErrUpstream (the
// context's end as such), worded without the token.
func (a *api) get(ctx context.Context, path string, v any) (http.Header, error) {
	return a.c.getJSON(ctx, a.name, a.base+path, a.token, a.header(), scopeHint(a.kind), v)
}

// scopeHint is what an answer refusing the token (401, 403) suggests.
func scopeHint(kind Kind) string {
	hint := "does the OAuth application grant the scopes this needs?"
	if kind == KindGitea {
		hint += " " + giteaGrants
	}
	return hint
}

// giteaGrants explains why a token may lack scopes that were asked for.
const giteaGrants = "Gitea keeps the scopes a user first granted to the application: after the scopes change, " +
	"the user revokes its access (Settings, Applications) and signs in again"

func (a *api) header() http.Header {
	h := http.Header{}
	switch a.kind {
	case KindGitHub:
		h.Set("Accept", "application/vnd.github+json")
		h.Set("X-GitHub-Api-Version", "2022-11-28")
	default:
		h.Set("Accept", "application/json")
	}
	return h
}

// getJSON GETs endpoint, with token as a bearer token when set, and decodes
// the JSON answer into v. hint ends the error of an answer refusing the
// token (401, 403).
func (c *Client) getJSON(ctx context.Context, name, endpoint, token string, h http.Header, hint string, v any) (http.Header, error) {
	shown := safeurl.Origin(endpoint)
	fail := func(format string, args ...any) error {
		msg := fmt.Sprintf("sso: provider %q: GET %s: ", name, shown) + fmt.Sprintf(format, args...)
		return runnel.Errorf(runnel.ErrUpstream, "%s", redact(msg, token))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, fail("%s", describe(err))
	}
	if h != nil {
		req.Header = h
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	req.Header.Set("User-Agent", userAgent)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sso: provider %q: GET %s: %w", name, shown, context.Cause(ctx))
		}
		return nil, fail("%s", describe(err))
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
			msg += ": redirect to " + safeurl.Origin(loc) + " not followed"
		}
		if m := apiMessage(body); m != "" {
			msg += ": " + m
		}
		if hint != "" && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			msg += " (" + hint + ")"
		}
		return nil, fail("%s", msg)
	}
	if readErr != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sso: provider %q: GET %s: %w", name, shown, context.Cause(ctx))
		}
		return nil, fail("reading the answer: %s", describe(readErr))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fail("the answer is not the JSON expected: %s", clean(err.Error(), 200))
	}
	return resp.Header, nil
}

// apiMessage is the message of an API's error answer, bounded and cleaned:
// {"message": …} (GitHub, GitLab, Gitea), {"error": {"message": …}}
// (Bitbucket), {"error": …, "error_description": …}; else the text.
func apiMessage(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	var m struct {
		Message any `json:"message"`
		Error   any `json:"error"`
		Desc    any `json:"error_description"`
	}
	if json.Unmarshal(body, &m) != nil {
		return clean(string(body), 200)
	}
	var parts []string
	for _, v := range []any{m.Message, m.Error, m.Desc} {
		switch x := v.(type) {
		case string:
			parts = append(parts, x)
		case map[string]any:
			if s, ok := x["message"].(string); ok {
				parts = append(parts, s)
			}
		}
	}
	if len(parts) == 0 {
		return clean(string(body), 200)
	}
	return clean(strings.Join(parts, ": "), 200)
}

// describe is an error's text without url.Error's "Get \"URL\":" prefix
// (the caller names the request).
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return clean(err.Error(), 300)
}

// redact replaces every occurrence of secret in s.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[REDACTED]")
}

// clean makes untrusted text fit a message: valid UTF-8, control
// characters and runs of spaces as one space, at most n bytes.
func clean(s string, n int) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			if b.Len()+1 > n {
				return b.String() + "…"
			}
			b.WriteByte(' ')
			space = false
		}
		if b.Len()+utf8.RuneLen(r) > n {
			return b.String() + "…"
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Package forges lists the forges Runnel knows (package forge's interface,
// one package each) and dispatches to them by name: a delivery's provider,
// a credential's kind.
package forges

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/forge/bitbucket"
	"github.com/runnel-ci/runnel/internal/forge/gitea"
	"github.com/runnel-ci/runnel/internal/forge/github"
	"github.com/runnel-ci/runnel/internal/forge/gitlab"
	"github.com/runnel-ci/runnel/internal/safeurl"
)

// all are the forges, in the order messages list them. Adding a forge is a
// package implementing forge.Forge (and forge.PullRequester when it has pull
// requests) and one entry here.
var all = []forge.Forge{github.Forge{}, gitlab.Forge{}, gitea.Forge{}, bitbucket.Forge{}}

// Names are the forges' names, in order.
func Names() []string {
	out := make([]string, len(all))
	for i, f := range all {
		out[i] = f.Name()
	}
	return out
}

// Get returns the forge named name.
func Get(name string) (forge.Forge, bool) {
	for _, f := range all {
		if f.Name() == name {
			return f, true
		}
	}
	return nil, false
}

func unknown(name string) error {
	return fmt.Errorf("%w %q; accepted: %s", forge.ErrUnknownProvider, name, strings.Join(Names(), ", "))
}

// Verify checks a delivery from provider with its forge (errors wrap
// forge.ErrUnauthorized, or forge.ErrUnknownProvider).
func Verify(provider string, header http.Header, body []byte, secret string) error {
	f, ok := Get(provider)
	if !ok {
		return unknown(provider)
	}
	return f.Verify(header, body, secret)
}

// Parse reads a delivery from provider with its forge, and fills what every
// forge's event has: a delivery id (the body's digest when the forge sent
// none), the provider and the trigger's event.
func Parse(provider string, header http.Header, body []byte) (*forge.Event, error) {
	f, ok := Get(provider)
	if !ok {
		return nil, unknown(provider)
	}
	ev, err := f.Parse(header, body)
	if err != nil {
		return nil, err
	}
	if ev.DeliveryID == "" {
		sum := sha256.Sum256(body)
		ev.DeliveryID = "sha256:" + hex.EncodeToString(sum[:])
	}
	ev.Trigger.Provider = provider
	if ev.Kind == forge.KindPush || ev.Kind == forge.KindTag || ev.Kind == forge.KindPullRequest {
		ev.Trigger.Event = ev.Kind
	}
	return ev, nil
}

// SignatureHeader is the header and value provider sends for body ("", ""
// for an unknown provider).
func SignatureHeader(provider string, body []byte, secret string) (name, value string) {
	f, ok := Get(provider)
	if !ok {
		return "", ""
	}
	return f.SignatureHeader(body, secret)
}

// PullRequestKinds are the names of the forges that open pull requests.
func PullRequestKinds() []string {
	var names []string
	for _, f := range all {
		if _, ok := f.(forge.PullRequester); ok {
			names = append(names, f.Name())
		}
	}
	return names
}

// pullRequester returns the forge of kind that opens pull requests.
func pullRequester(kind string) (forge.PullRequester, string, error) {
	supported := strings.Join(PullRequestKinds(), ", ")
	k := strings.ToLower(strings.TrimSpace(kind))
	if k == "" {
		return nil, "", fmt.Errorf("forge: kind is empty (supported: %s)", supported)
	}
	if f, ok := Get(k); ok {
		if pr, ok := f.(forge.PullRequester); ok {
			return pr, k, nil
		}
	}
	return nil, "", fmt.Errorf("forge: unsupported kind %q (supported: %s)", kind, supported)
}

// Open opens the pull/merge request described by r and returns its number
// and web URL.
//
// hc is the HTTP client to use; nil means a client like http.DefaultClient
// that does not follow redirects, with a 30s timeout (through the context)
// when ctx has no deadline.
//
// An already existing open request for the same head and base is reported as
// an error matching forge.ErrAlreadyExists when the forge says so clearly;
// any other non-2xx answer is returned as a *forge.Error carrying the
// forge's message. The token never appears in what is returned.
func Open(ctx context.Context, hc *http.Client, r forge.Request) (*forge.PullRequest, error) {
	pr, err := open(ctx, hc, r)
	if err != nil {
		return nil, forge.Scrub(err, r.Token)
	}
	return pr, nil
}

func open(ctx context.Context, hc *http.Client, r forge.Request) (*forge.PullRequest, error) {
	f, kind, err := pullRequester(r.Kind)
	if err != nil {
		return nil, err
	}
	if err := validate(kind, r); err != nil {
		return nil, err
	}
	_, repoPath, err := forge.RepoPath(r.RepoURL)
	if err != nil {
		return nil, fmt.Errorf("forge: %s: %w", kind, err)
	}
	base, err := apiBase(f, kind, r)
	if err != nil {
		return nil, err
	}
	return f.OpenPullRequest(ctx, hc, base, repoPath, r)
}

func validate(kind string, r forge.Request) error {
	var missing []string
	for _, f := range []struct{ name, v string }{{"Token", r.Token}, {"Head", r.Head}, {"Base", r.Base}, {"Title", r.Title}, {"RepoURL", r.RepoURL}} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
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
func apiBase(f forge.PullRequester, kind string, r forge.Request) (string, error) {
	if strings.TrimSpace(r.APIURL) == "" {
		b, err := derivedBase(f, r.RepoURL)
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
	f, _, err := pullRequester(kind)
	if err != nil {
		return "", err
	}
	return derivedBase(f, repoURL)
}

func derivedBase(f forge.PullRequester, repoURL string) (string, error) {
	host, _, err := forge.RepoPath(repoURL)
	if err != nil {
		return "", err
	}
	scheme := "https"
	if s, _, ok := strings.Cut(strings.TrimSpace(repoURL), "://"); ok && strings.EqualFold(s, "http") {
		scheme = "http"
	}
	return f.APIBase(scheme, host), nil
}

// Package forge is what Runnel knows of a code forge, behind one interface:
// each forge (internal/forge/github, gitlab, gitea, bitbucket) verifies and
// parses its webhook deliveries and, where it has them, opens pull requests;
// the next steps of the design (OAuth sign-in, repositories, hooks, commit
// statuses) are methods of the same interface. Package forges lists them.
//
// This package holds the shared parts: the Event a delivery becomes, the
// helpers deliveries are parsed with, and the HTTP plumbing of API calls
// (tokens never in errors, bounded bodies, no redirects followed).
package forge

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/runnel-ci/runnel"
)

// Forge is one code forge.
type Forge interface {
	// Name is the forge's name in URLs and configuration: github, gitlab,
	// gitea, bitbucket.
	Name() string
	// Verify checks that a delivery was sent by someone knowing secret.
	// Every comparison takes constant time; an empty secret never
	// verifies. Errors wrap ErrUnauthorized and say which header was
	// missing or wrong, never what was expected.
	Verify(header http.Header, body []byte, secret string) error
	// SignatureHeader is the header and value the forge sends for body: what
	// a test or a client replaying a delivery needs.
	SignatureHeader(body []byte, secret string) (name, value string)
	// Parse reads a delivery. Events Runnel has no use for come back as
	// KindIgnored with a Reason; errors wrap ErrPayload.
	Parse(header http.Header, body []byte) (*Event, error)
}

// PullRequester is a Forge that opens pull (merge) requests.
type PullRequester interface {
	Forge
	// APIBase is the API's base URL for a repository on host (scheme http
	// or https, as the repository URL says).
	APIBase(scheme, host string) string
	// OpenPullRequest opens r on the repository at repoPath ("owner/name",
	// or GitLab's "group/sub/name") through the API at base.
	OpenPullRequest(ctx context.Context, hc *http.Client, base, repoPath string, r Request) (*PullRequest, error)
}

// Kinds of Event.
const (
	KindPush        = "push"
	KindTag         = "tag"
	KindPullRequest = "pull_request"
	KindPing        = "ping"
	// KindIgnored is an event Runnel does not start runs for; Reason says why.
	KindIgnored = "ignored"
)

// Event is a parsed delivery.
type Event struct {
	Kind string
	// DeliveryID identifies the delivery (the provider's delivery header);
	// when the provider sent none, "sha256:" and the hex digest of the body,
	// so that the same payload sent again is still recognised.
	DeliveryID string
	// Trigger is the run's trigger context (Type is left to the caller).
	Trigger runnel.Trigger
	// Deleted: the push deleted the branch or tag; nothing is left to build.
	Deleted bool
	// ChangedPaths are the files the push changed (added, modified or
	// removed, in any of its commits), sorted and distinct. nil means
	// unknown (pull requests, Bitbucket pushes, truncated commit lists):
	// a paths filter then does not exclude the event.
	ChangedPaths []string
	// Reason explains KindIgnored.
	Reason string
}

// ZeroSHA is the commit id forges send for a ref that does not exist (the
// "after" of a deletion, the "before" of a creation).
const ZeroSHA = "0000000000000000000000000000000000000000"

// Errors of verifying and parsing deliveries; callers tell them apart with
// errors.Is.
var (
	// ErrUnknownProvider: the provider is not one of the forges (package
	// forges).
	ErrUnknownProvider = errors.New("unknown webhook provider")
	// ErrUnauthorized: the signature (or token) is missing, malformed or
	// wrong, or no secret is set.
	ErrUnauthorized = errors.New("webhook signature rejected")
	// ErrPayload: the payload is not what the provider documents.
	ErrPayload = errors.New("webhook payload not understood")
)

// FirstHeader is the first of the named headers that is set.
func FirstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(h.Get(n)); v != "" {
			return v
		}
	}
	return ""
}

// Decode reads a delivery's JSON body into v; an error wraps ErrPayload.
func Decode(provider, event string, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %s %q event: %v", ErrPayload, provider, event, err)
	}
	return nil
}

// Ignored is an event Runnel starts no run for, with the reason.
func Ignored(format string, args ...any) *Event {
	return &Event{Kind: KindIgnored, Reason: fmt.Sprintf(format, args...)}
}

// RefEvent fills kind, ref, branch or tag from a full ref name.
func RefEvent(ev *Event, ref string) error {
	ev.Trigger.Ref = ref
	switch {
	case strings.HasPrefix(ref, "refs/tags/"):
		ev.Kind, ev.Trigger.Tag = KindTag, strings.TrimPrefix(ref, "refs/tags/")
	case strings.HasPrefix(ref, "refs/heads/"):
		ev.Kind, ev.Trigger.Branch = KindPush, strings.TrimPrefix(ref, "refs/heads/")
	case ref == "":
		return fmt.Errorf("%w: the push names no ref", ErrPayload)
	default:
		ev.Kind, ev.Reason = KindIgnored, fmt.Sprintf("ref %q is neither a branch (refs/heads/) nor a tag (refs/tags/)", ref)
	}
	return nil
}

// pathSet collects changed paths.
type pathSet map[string]bool

func (s pathSet) add(lists ...[]string) {
	for _, l := range lists {
		for _, p := range l {
			s[p] = true
		}
	}
}

func (s pathSet) sorted() []string {
	out := make([]string, 0, len(s))
	for p := range s {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// FileCommit is a commit of a GitHub, GitLab or Gitea push.
type FileCommit struct {
	ID       string   `json:"id"`
	Message  string   `json:"message"`
	Added    []string `json:"added"`
	Modified []string `json:"modified"`
	Removed  []string `json:"removed"`
	Author   struct {
		Name     string `json:"name"`
		Username string `json:"username"`
	} `json:"author"`
}

// ChangedPaths are the files a push's commits added, modified or removed,
// sorted and distinct.
func ChangedPaths(commits []FileCommit) []string {
	s := pathSet{}
	for _, c := range commits {
		s.add(c.Added, c.Modified, c.Removed)
	}
	return s.sorted()
}

// PRAccepted reports whether a pull request action is one of accepted.
func PRAccepted(action string, accepted ...string) bool {
	for _, a := range accepted {
		if action == a {
			return true
		}
	}
	return false
}

// CheckHMAC checks header name (after prefix) against the hex HMAC-SHA256 of
// body under secret, in constant time; errors wrap ErrUnauthorized and never
// say what was expected.
func CheckHMAC(header http.Header, name, prefix string, body []byte, secret string) error {
	if secret == "" {
		return fmt.Errorf("%w: no webhook secret is set for this pipeline", ErrUnauthorized)
	}
	v := header.Get(name)
	if v == "" {
		return fmt.Errorf("%w: header %s is missing (is a secret set on the webhook?)", ErrUnauthorized, name)
	}
	hexSig, ok := strings.CutPrefix(v, prefix)
	if !ok {
		return fmt.Errorf("%w: header %s must start with %q", ErrUnauthorized, name, prefix)
	}
	got, err := hex.DecodeString(strings.TrimSpace(hexSig))
	if err != nil {
		return fmt.Errorf("%w: header %s is not a hex digest", ErrUnauthorized, name)
	}
	if !hmac.Equal(got, Sign(body, secret)) {
		return fmt.Errorf("%w: header %s does not match the body signed with the pipeline's webhook secret", ErrUnauthorized, name)
	}
	return nil
}

// Sign is the HMAC-SHA256 of body under secret (what GitHub, Gitea and
// Bitbucket send, hex-encoded).
func Sign(body []byte, secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return m.Sum(nil)
}

// HexHMAC is Sign, hex-encoded: the signature headers' value.
func HexHMAC(body []byte, secret string) string { return hex.EncodeToString(Sign(body, secret)) }

// Package github is GitHub (and GitHub Enterprise Server) as a forge:
// deliveries signed in X-Hub-Signature-256, pull requests through the REST
// API.
package github

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/forge"
)

// Forge is GitHub.
type Forge struct{}

var _ forge.PullRequester = Forge{}

// Name implements forge.Forge.
func (Forge) Name() string { return forge.KindGitHub }

// Verify checks X-Hub-Signature-256: "sha256=" and the hex HMAC-SHA256 of
// the body.
func (Forge) Verify(h http.Header, body []byte, secret string) error {
	return forge.CheckHMAC(h, "X-Hub-Signature-256", "sha256=", body, secret)
}

// SignatureHeader implements forge.Forge.
func (Forge) SignatureHeader(body []byte, secret string) (string, string) {
	return "X-Hub-Signature-256", "sha256=" + forge.HexHMAC(body, secret)
}

// APIBase is https://api.github.com for github.com, SCHEME://HOST/api/v3
// for GitHub Enterprise Server.
func (Forge) APIBase(scheme, host string) string {
	if strings.EqualFold(host, "github.com") || strings.EqualFold(host, "www.github.com") {
		return "https://api.github.com"
	}
	return scheme + "://" + host + "/api/v3"
}

// OpenPullRequest implements forge.PullRequester.
func (Forge) OpenPullRequest(ctx context.Context, hc *http.Client, base, repoPath string, r forge.Request) (*forge.PullRequest, error) {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+r.Token)
	h.Set("Accept", "application/vnd.github+json")
	h.Set("X-GitHub-Api-Version", "2022-11-28")
	return OpenPull(ctx, hc, forge.KindGitHub, base, repoPath, r, h, alreadyExists)
}

// alreadyExists: GitHub answers 422 with "A pull request already exists…"
// among its errors.
func alreadyExists(status int, _ string, details []string) bool {
	if status != http.StatusUnprocessableEntity {
		return false
	}
	for _, d := range details {
		if strings.Contains(strings.ToLower(d), "a pull request already exists") {
			return true
		}
	}
	return false
}

// OpenPull opens a pull request through the /repos/OWNER/NAME/pulls API
// that GitHub and Gitea share; header carries the forge's authentication.
func OpenPull(ctx context.Context, hc *http.Client, kind, base, repoPath string, r forge.Request, header http.Header,
	exists func(int, string, []string) bool) (*forge.PullRequest, error) {
	parts := strings.Split(repoPath, "/")
	if len(parts) != 2 {
		return nil, fmt.Errorf("forge: %s: repository path %q must be owner/name", kind, repoPath)
	}
	endpoint := base + "/repos/" + url.PathEscape(parts[0]) + "/" + url.PathEscape(parts[1]) + "/pulls"
	a, err := forge.Post(ctx, hc, kind, endpoint, header, pullPayload{Title: r.Title, Head: r.Head, Base: r.Base, Body: r.Body}, r.Token, exists)
	if err != nil {
		return nil, err
	}
	var out struct {
		Number  int64  `json:"number"`
		HTMLURL string `json:"html_url"`
	}
	if err := json.Unmarshal(a.Body, &out); err != nil {
		return nil, a.Errorf("decoding response: %v", err)
	}
	return a.PullRequest(out.Number, out.HTMLURL)
}

type pullPayload struct {
	Title string `json:"title"`
	Head  string `json:"head"`
	Base  string `json:"base"`
	Body  string `json:"body"`
}

// PR is a pull request in GitHub's (and Gitea's) payloads.
type PR struct {
	Number  int64  `json:"number"`
	Title   string `json:"title"`
	HTMLURL string `json:"html_url"`
	Head    struct {
		Ref  string `json:"ref"`
		SHA  string `json:"sha"`
		Repo PRRepo `json:"repo"`
	} `json:"head"`
	Base struct {
		Ref  string `json:"ref"`
		Repo PRRepo `json:"repo"`
	} `json:"base"`
	User struct {
		Login string `json:"login"`
	} `json:"user"`
}

// PRRepo is the repository of a pull request's head or base.
type PRRepo struct {
	FullName string `json:"full_name"`
	// Null: the payload said null, which GitHub does for a head whose fork
	// was deleted. An absent field leaves both empty.
	Null bool `json:"-"`
}

// UnmarshalJSON records a null repository (encoding/json calls it with
// null too, the field not being a pointer).
func (r *PRRepo) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*r = PRRepo{Null: true}
		return nil
	}
	type plain PRRepo
	return json.Unmarshal(b, (*plain)(r))
}

// Fork says whether the pull request comes from another repository than
// its base, and names that repository (empty when it is the base, or when
// the fork was deleted). A head repository of null (a deleted fork) is a
// fork; without both names (payloads that leave them out) it is not.
func (pr *PR) Fork() (fork bool, headRepo string) {
	head, base := pr.Head.Repo, pr.Base.Repo
	if head.Null {
		return true, ""
	}
	if head.FullName == "" || base.FullName == "" || strings.EqualFold(head.FullName, base.FullName) {
		return false, ""
	}
	return true, head.FullName
}

// Push is a push as GitHub sends it; Gitea sends the same shape, naming
// the pusher by login.
type Push struct {
	Ref        string             `json:"ref"`
	Before     string             `json:"before"`
	After      string             `json:"after"`
	Deleted    bool               `json:"deleted"`
	Commits    []forge.FileCommit `json:"commits"`
	HeadCommit *forge.FileCommit  `json:"head_commit"`
	Pusher     struct {
		Name  string `json:"name"`
		Login string `json:"login"`
	} `json:"pusher"`
	Sender struct {
		Login string `json:"login"`
	} `json:"sender"`
}

// Event is the push's Event, made by actor.
func (p *Push) Event(actor string) (*forge.Event, error) {
	ev := &forge.Event{}
	if err := forge.RefEvent(ev, p.Ref); err != nil {
		return nil, err
	}
	t := &ev.Trigger
	t.Before, t.After, t.Commit = p.Before, p.After, p.After
	t.Actor = actor
	if hc := p.HeadCommit; hc != nil {
		t.Message, t.Author = hc.Message, hc.Author.Name
	}
	ev.Deleted = p.Deleted || p.After == forge.ZeroSHA
	ev.ChangedPaths = forge.ChangedPaths(p.Commits)
	return ev, nil
}

// PullRequestEvent is a pull request event as GitHub and Gitea send it.
type PullRequestEvent struct {
	Action      string `json:"action"`
	Number      int64  `json:"number"`
	PullRequest PR     `json:"pull_request"`
	Sender      struct {
		Login string `json:"login"`
	} `json:"sender"`
}

// Event is the pull request's Event (its action accepted by the caller).
func (p *PullRequestEvent) Event() *forge.Event {
	pr := p.PullRequest
	if pr.Number == 0 {
		pr.Number = p.Number
	}
	fork, headRepo := pr.Fork()
	return &forge.Event{Kind: forge.KindPullRequest, Trigger: runnel.Trigger{
		Ref: "refs/pull/" + strconv.FormatInt(pr.Number, 10) + "/head", Branch: pr.Head.Ref, Commit: pr.Head.SHA,
		After: pr.Head.SHA, Actor: p.Sender.Login, Action: p.Action,
		PullRequest: runnel.PullRequest{Number: pr.Number, Title: pr.Title, Head: pr.Head.Ref, Base: pr.Base.Ref, URL: pr.HTMLURL,
			Fork: fork, HeadRepo: headRepo},
	}}
}

// Parse reads a delivery: push, pull_request (opened, synchronize,
// reopened) and ping.
func (Forge) Parse(h http.Header, body []byte) (*forge.Event, error) {
	name := h.Get("X-GitHub-Event")
	id := forge.FirstHeader(h, "X-GitHub-Delivery")
	var ev *forge.Event
	switch name {
	case "ping":
		ev = &forge.Event{Kind: forge.KindPing}
	case "push":
		var p Push
		if err := forge.Decode("github", name, body, &p); err != nil {
			return nil, err
		}
		var err error
		if ev, err = p.Event(cmp.Or(p.Sender.Login, p.Pusher.Name)); err != nil {
			return nil, err
		}
	case "pull_request":
		var p PullRequestEvent
		if err := forge.Decode("github", name, body, &p); err != nil {
			return nil, err
		}
		if !forge.PRAccepted(p.Action, "opened", "synchronize", "reopened") {
			ev = forge.Ignored("pull request action %q does not start runs (accepted: opened, synchronize, reopened)", p.Action)
			break
		}
		ev = p.Event()
	case "":
		return nil, fmt.Errorf("%w: header X-GitHub-Event is missing", forge.ErrPayload)
	default:
		ev = forge.Ignored("GitHub event %q does not start runs (accepted: push, pull_request, ping)", name)
	}
	ev.DeliveryID = id
	return ev, nil
}

// Package gitea is Gitea (and Forgejo) as a forge: deliveries signed in
// X-Gitea-Signature, pull requests through GitHub's API shape (v1).
package gitea

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/runnel-ci/runnel/internal/forge"
	"github.com/runnel-ci/runnel/internal/forge/github"
)

// Forge is Gitea.
type Forge struct{}

var _ forge.PullRequester = Forge{}

// Name implements forge.Forge.
func (Forge) Name() string { return forge.KindGitea }

// Verify checks X-Gitea-Signature: the hex HMAC-SHA256 of the body, no
// prefix.
func (Forge) Verify(h http.Header, body []byte, secret string) error {
	return forge.CheckHMAC(h, "X-Gitea-Signature", "", body, secret)
}

// SignatureHeader implements forge.Forge.
func (Forge) SignatureHeader(body []byte, secret string) (string, string) {
	return "X-Gitea-Signature", forge.HexHMAC(body, secret)
}

// APIBase is SCHEME://HOST/api/v1.
func (Forge) APIBase(scheme, host string) string { return scheme + "://" + host + "/api/v1" }

// OpenPullRequest implements forge.PullRequester.
func (Forge) OpenPullRequest(ctx context.Context, hc *http.Client, base, repoPath string, r forge.Request) (*forge.PullRequest, error) {
	h := http.Header{}
	h.Set("Authorization", "token "+r.Token)
	h.Set("Accept", "application/json")
	exists := func(status int, msg string, _ []string) bool {
		return status == http.StatusConflict && strings.Contains(strings.ToLower(msg), "already exists")
	}
	return github.OpenPull(ctx, hc, forge.KindGitea, base, repoPath, r, h, exists)
}

// Parse reads a delivery: push, pull_request (opened, synchronized,
// reopened); create is ignored (Gitea sends a push for it too).
func (Forge) Parse(h http.Header, body []byte) (*forge.Event, error) {
	name := h.Get("X-Gitea-Event")
	id := forge.FirstHeader(h, "X-Gitea-Delivery")
	var ev *forge.Event
	switch name {
	case "push":
		var p github.Push
		if err := forge.Decode("gitea", name, body, &p); err != nil {
			return nil, err
		}
		var err error
		if ev, err = p.Event(cmp.Or(p.Pusher.Login, p.Sender.Login)); err != nil {
			return nil, err
		}
	case "create":
		// Gitea sends a push event for the same tag or branch too; starting a
		// run from both would build it twice.
		var p struct {
			Ref     string `json:"ref"`
			RefType string `json:"ref_type"`
		}
		if err := forge.Decode("gitea", name, body, &p); err != nil {
			return nil, err
		}
		ev = forge.Ignored("Gitea create event for %s %q: runs start from the push event Gitea sends for it too", p.RefType, p.Ref)
	case "pull_request":
		var p github.PullRequestEvent
		if err := forge.Decode("gitea", name, body, &p); err != nil {
			return nil, err
		}
		if !forge.PRAccepted(p.Action, "opened", "synchronized", "synchronize", "reopened") {
			ev = forge.Ignored("pull request action %q does not start runs (accepted: opened, synchronized, reopened)", p.Action)
			break
		}
		ev = p.Event()
	case "":
		return nil, fmt.Errorf("%w: header X-Gitea-Event is missing", forge.ErrPayload)
	default:
		ev = forge.Ignored("Gitea event %q does not start runs (accepted: push, create, pull_request)", name)
	}
	ev.DeliveryID = id
	return ev, nil
}

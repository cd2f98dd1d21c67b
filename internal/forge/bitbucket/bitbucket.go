// Package bitbucket is Bitbucket Cloud as a forge: deliveries signed in
// X-Hub-Signature (when the webhook has a secret).
package bitbucket

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/forge"
)

// Forge is Bitbucket Cloud.
type Forge struct{}

var _ forge.Forge = Forge{}

// Name implements forge.Forge.
func (Forge) Name() string { return "bitbucket" }

// Verify checks X-Hub-Signature: "sha256=" and the hex HMAC-SHA256 of the
// body.
func (Forge) Verify(h http.Header, body []byte, secret string) error {
	return forge.CheckHMAC(h, "X-Hub-Signature", "sha256=", body, secret)
}

// SignatureHeader implements forge.Forge.
func (Forge) SignatureHeader(body []byte, secret string) (string, string) {
	return "X-Hub-Signature", "sha256=" + forge.HexHMAC(body, secret)
}

type bbUser struct {
	DisplayName string `json:"display_name"`
	Nickname    string `json:"nickname"`
}

func (u bbUser) name() string {
	if u.Nickname != "" {
		return u.Nickname
	}
	return u.DisplayName
}

type bbRef struct {
	Type   string `json:"type"` // branch | tag
	Name   string `json:"name"`
	Target struct {
		Hash    string `json:"hash"`
		Message string `json:"message"`
		Author  struct {
			Raw  string  `json:"raw"`
			User *bbUser `json:"user"`
		} `json:"author"`
	} `json:"target"`
}

// bbRepoRef is the repository of a pull request's source or destination;
// Null records an explicit null (a source whose fork was deleted).
type bbRepoRef struct {
	FullName string
	Null     bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (r *bbRepoRef) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*r = bbRepoRef{Null: true}
		return nil
	}
	var v struct {
		FullName string `json:"full_name"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = bbRepoRef{FullName: v.FullName}
	return nil
}

// forkOf says whether a pull request comes from another repository than
// its destination, and that repository's full name. A source repository
// given as null (its fork was deleted) is a fork of unknown name; one not
// named at all is taken for the destination.
func forkOf(source, destination bbRepoRef) (fork bool, headRepo string) {
	if source.Null {
		return true, ""
	}
	if source.FullName == "" || destination.FullName == "" || strings.EqualFold(source.FullName, destination.FullName) {
		return false, ""
	}
	return true, source.FullName
}

// Parse reads a delivery: repo:push, pullrequest:created and
// pullrequest:updated, diagnostics:ping.
func (Forge) Parse(h http.Header, body []byte) (*forge.Event, error) {
	name := h.Get("X-Event-Key")
	id := forge.FirstHeader(h, "X-Request-UUID", "X-Hook-UUID")
	var ev *forge.Event
	switch name {
	case "diagnostics:ping":
		ev = &forge.Event{Kind: forge.KindPing}
	case "repo:push":
		var p struct {
			Actor bbUser `json:"actor"`
			Push  struct {
				Changes []struct {
					New *bbRef `json:"new"`
					Old *bbRef `json:"old"`
				} `json:"changes"`
			} `json:"push"`
		}
		if err := forge.Decode("bitbucket", name, body, &p); err != nil {
			return nil, err
		}
		if len(p.Push.Changes) == 0 {
			ev = forge.Ignored("the push changes no branch or tag")
			break
		}
		// A push of several refs at once comes as one delivery; Runnel builds
		// the first (see docs/triggers.md).
		c := p.Push.Changes[0]
		ref := c.New
		ev = &forge.Event{}
		if ref == nil {
			ev.Deleted = true
			ref = c.Old
		}
		if ref == nil {
			return nil, fmt.Errorf("%w: bitbucket %q event: a change with neither new nor old", forge.ErrPayload, name)
		}
		switch ref.Type {
		case "branch":
			ev.Kind, ev.Trigger.Branch, ev.Trigger.Ref = forge.KindPush, ref.Name, "refs/heads/"+ref.Name
		case "tag", "annotated_tag":
			ev.Kind, ev.Trigger.Tag, ev.Trigger.Ref = forge.KindTag, ref.Name, "refs/tags/"+ref.Name
		default:
			return forge.Ignored("Bitbucket change of a %q, not a branch or tag", ref.Type), nil
		}
		t := &ev.Trigger
		t.Actor = p.Actor.name()
		if c.Old != nil {
			t.Before = c.Old.Target.Hash
		}
		if c.New != nil {
			t.After, t.Commit = c.New.Target.Hash, c.New.Target.Hash
			t.Message = c.New.Target.Message
			if u := c.New.Target.Author.User; u != nil {
				t.Author = u.DisplayName
			} else {
				t.Author = c.New.Target.Author.Raw
			}
		}
		// Bitbucket's push payload lists no files: ChangedPaths stays nil.
	case "pullrequest:created", "pullrequest:updated":
		var p struct {
			Actor bbUser `json:"actor"`
			PR    struct {
				ID     int64  `json:"id"`
				Title  string `json:"title"`
				Source struct {
					Branch struct {
						Name string `json:"name"`
					} `json:"branch"`
					Commit struct {
						Hash string `json:"hash"`
					} `json:"commit"`
					Repository bbRepoRef `json:"repository"`
				} `json:"source"`
				Destination struct {
					Branch struct {
						Name string `json:"name"`
					} `json:"branch"`
					Repository bbRepoRef `json:"repository"`
				} `json:"destination"`
				Links struct {
					HTML struct {
						Href string `json:"href"`
					} `json:"html"`
				} `json:"links"`
			} `json:"pullrequest"`
		}
		if err := forge.Decode("bitbucket", name, body, &p); err != nil {
			return nil, err
		}
		pr := p.PR
		fork, headRepo := forkOf(pr.Source.Repository, pr.Destination.Repository)
		ev = &forge.Event{Kind: forge.KindPullRequest}
		ev.Trigger = runnel.Trigger{
			Ref: "refs/heads/" + pr.Source.Branch.Name, Branch: pr.Source.Branch.Name, Commit: pr.Source.Commit.Hash,
			After: pr.Source.Commit.Hash, Actor: p.Actor.name(), Action: strings.TrimPrefix(name, "pullrequest:"),
			PullRequest: runnel.PullRequest{Number: pr.ID, Title: pr.Title, Head: pr.Source.Branch.Name, Base: pr.Destination.Branch.Name, URL: pr.Links.HTML.Href,
				Fork: fork, HeadRepo: headRepo},
		}
	case "":
		return nil, fmt.Errorf("%w: header X-Event-Key is missing", forge.ErrPayload)
	default:
		ev = forge.Ignored("Bitbucket event %q does not start runs (accepted: repo:push, pullrequest:created, pullrequest:updated)", name)
	}
	ev.DeliveryID = id
	return ev, nil
}

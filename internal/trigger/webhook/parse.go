package webhook

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/runnel-ci/runnel"
)

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

// zeroSHA is the commit id forges send for a ref that does not exist (the
// "after" of a deletion, the "before" of a creation).
const zeroSHA = "0000000000000000000000000000000000000000"

// Parse reads a delivery's headers and JSON body. Events Runnel has no use for
// come back as KindIgnored with a Reason, not as errors; errors wrap
// ErrUnknownProvider or ErrPayload (a body that is not the documented JSON).
func Parse(provider string, header http.Header, body []byte) (*Event, error) {
	var (
		ev  *Event
		err error
	)
	switch provider {
	case "github":
		ev, err = parseGitHub(header, body)
	case "gitlab":
		ev, err = parseGitLab(header, body)
	case "gitea":
		ev, err = parseGitea(header, body)
	case "bitbucket":
		ev, err = parseBitbucket(header, body)
	default:
		return nil, unknownProvider(provider)
	}
	if err != nil {
		return nil, err
	}
	if ev.DeliveryID == "" {
		sum := sha256.Sum256(body)
		ev.DeliveryID = "sha256:" + hex.EncodeToString(sum[:])
	}
	ev.Trigger.Provider = provider
	if ev.Kind == KindPush || ev.Kind == KindTag || ev.Kind == KindPullRequest {
		ev.Trigger.Event = ev.Kind
	}
	return ev, nil
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(h.Get(n)); v != "" {
			return v
		}
	}
	return ""
}

func decode(provider, event string, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %s %q event: %v", ErrPayload, provider, event, err)
	}
	return nil
}

func ignored(format string, args ...any) *Event {
	return &Event{Kind: KindIgnored, Reason: fmt.Sprintf(format, args...)}
}

// refEvent fills kind, ref, branch or tag from a full ref name.
func refEvent(ev *Event, ref string) error {
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

// fileCommit is a commit of a GitHub, GitLab or Gitea push.
type fileCommit struct {
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

func changedPaths(commits []fileCommit) []string {
	s := pathSet{}
	for _, c := range commits {
		s.add(c.Added, c.Modified, c.Removed)
	}
	return s.sorted()
}

// prAction maps a pull request action to whether it starts runs.
func prAccepted(action string, accepted ...string) bool {
	for _, a := range accepted {
		if action == a {
			return true
		}
	}
	return false
}

// --- GitHub ---

type ghPR struct {
	Number  int64  `json:"number"`
	Title   string `json:"title"`
	HTMLURL string `json:"html_url"`
	Head    struct {
		Ref string `json:"ref"`
		SHA string `json:"sha"`
	} `json:"head"`
	Base struct {
		Ref string `json:"ref"`
	} `json:"base"`
	User struct {
		Login string `json:"login"`
	} `json:"user"`
}

// ghPush is a push as GitHub sends it; Gitea sends the same shape, naming
// the pusher by login.
type ghPush struct {
	Ref        string       `json:"ref"`
	Before     string       `json:"before"`
	After      string       `json:"after"`
	Deleted    bool         `json:"deleted"`
	Commits    []fileCommit `json:"commits"`
	HeadCommit *fileCommit  `json:"head_commit"`
	Pusher     struct {
		Name  string `json:"name"`
		Login string `json:"login"`
	} `json:"pusher"`
	Sender struct {
		Login string `json:"login"`
	} `json:"sender"`
}

// event is the push's Event, made by actor.
func (p *ghPush) event(actor string) (*Event, error) {
	ev := &Event{}
	if err := refEvent(ev, p.Ref); err != nil {
		return nil, err
	}
	t := &ev.Trigger
	t.Before, t.After, t.Commit = p.Before, p.After, p.After
	t.Actor = actor
	if hc := p.HeadCommit; hc != nil {
		t.Message, t.Author = hc.Message, hc.Author.Name
	}
	ev.Deleted = p.Deleted || p.After == zeroSHA
	ev.ChangedPaths = changedPaths(p.Commits)
	return ev, nil
}

// ghPREvent is a pull request event as GitHub and Gitea send it.
type ghPREvent struct {
	Action      string `json:"action"`
	Number      int64  `json:"number"`
	PullRequest ghPR   `json:"pull_request"`
	Sender      struct {
		Login string `json:"login"`
	} `json:"sender"`
}

// event is the pull request's Event (its action accepted by the caller).
func (p *ghPREvent) event() *Event {
	pr := p.PullRequest
	if pr.Number == 0 {
		pr.Number = p.Number
	}
	return &Event{Kind: KindPullRequest, Trigger: runnel.Trigger{
		Ref: "refs/pull/" + strconv.FormatInt(pr.Number, 10) + "/head", Branch: pr.Head.Ref, Commit: pr.Head.SHA,
		After: pr.Head.SHA, Actor: p.Sender.Login, Action: p.Action,
		PullRequest: runnel.PullRequest{Number: pr.Number, Title: pr.Title, Head: pr.Head.Ref, Base: pr.Base.Ref, URL: pr.HTMLURL},
	}}
}

func parseGitHub(h http.Header, body []byte) (*Event, error) {
	name := h.Get("X-GitHub-Event")
	id := firstHeader(h, "X-GitHub-Delivery")
	var ev *Event
	switch name {
	case "ping":
		ev = &Event{Kind: KindPing}
	case "push":
		var p ghPush
		if err := decode("github", name, body, &p); err != nil {
			return nil, err
		}
		var err error
		if ev, err = p.event(cmp.Or(p.Sender.Login, p.Pusher.Name)); err != nil {
			return nil, err
		}
	case "pull_request":
		var p ghPREvent
		if err := decode("github", name, body, &p); err != nil {
			return nil, err
		}
		if !prAccepted(p.Action, "opened", "synchronize", "reopened") {
			ev = ignored("pull request action %q does not start runs (accepted: opened, synchronize, reopened)", p.Action)
			break
		}
		ev = p.event()
	case "":
		return nil, fmt.Errorf("%w: header X-GitHub-Event is missing", ErrPayload)
	default:
		ev = ignored("GitHub event %q does not start runs (accepted: push, pull_request, ping)", name)
	}
	ev.DeliveryID = id
	return ev, nil
}

// --- GitLab ---

func parseGitLab(h http.Header, body []byte) (*Event, error) {
	name := h.Get("X-Gitlab-Event")
	id := firstHeader(h, "X-Gitlab-Event-UUID", "Idempotency-Key")
	var ev *Event
	switch name {
	case "Push Hook", "Tag Push Hook":
		var p struct {
			Ref               string       `json:"ref"`
			Before            string       `json:"before"`
			After             string       `json:"after"`
			CheckoutSHA       *string      `json:"checkout_sha"`
			UserUsername      string       `json:"user_username"`
			UserName          string       `json:"user_name"`
			Commits           []fileCommit `json:"commits"`
			TotalCommitsCount int          `json:"total_commits_count"`
		}
		if err := decode("gitlab", name, body, &p); err != nil {
			return nil, err
		}
		ev = &Event{}
		if err := refEvent(ev, p.Ref); err != nil {
			return nil, err
		}
		t := &ev.Trigger
		t.Before, t.After, t.Commit = p.Before, p.After, p.After
		t.Actor = p.UserUsername
		if t.Actor == "" {
			t.Actor = p.UserName
		}
		// GitLab lists commits oldest first; the last one is the head.
		for _, c := range p.Commits {
			if c.ID == p.After {
				t.Message, t.Author = c.Message, c.Author.Name
			}
		}
		ev.Deleted = p.After == zeroSHA
		// GitLab sends at most 20 commits: beyond that the paths are unknown.
		if p.TotalCommitsCount <= len(p.Commits) {
			ev.ChangedPaths = changedPaths(p.Commits)
		}
	case "Merge Request Hook":
		var p struct {
			User struct {
				Username string `json:"username"`
			} `json:"user"`
			Attrs struct {
				IID          int64  `json:"iid"`
				Title        string `json:"title"`
				URL          string `json:"url"`
				SourceBranch string `json:"source_branch"`
				TargetBranch string `json:"target_branch"`
				Action       string `json:"action"`
				LastCommit   struct {
					ID      string `json:"id"`
					Message string `json:"message"`
					Author  struct {
						Name string `json:"name"`
					} `json:"author"`
				} `json:"last_commit"`
			} `json:"object_attributes"`
		}
		if err := decode("gitlab", name, body, &p); err != nil {
			return nil, err
		}
		a := p.Attrs
		if !prAccepted(a.Action, "open", "update", "reopen") {
			ev = ignored("merge request action %q does not start runs (accepted: open, update, reopen)", a.Action)
			break
		}
		ev = &Event{Kind: KindPullRequest}
		ev.Trigger = runnel.Trigger{
			Ref: "refs/merge-requests/" + strconv.FormatInt(a.IID, 10) + "/head", Branch: a.SourceBranch,
			Commit: a.LastCommit.ID, After: a.LastCommit.ID, Actor: p.User.Username, Action: a.Action,
			Author: a.LastCommit.Author.Name, Message: a.LastCommit.Message,
			PullRequest: runnel.PullRequest{Number: a.IID, Title: a.Title, Head: a.SourceBranch, Base: a.TargetBranch, URL: a.URL},
		}
	case "":
		return nil, fmt.Errorf("%w: header X-Gitlab-Event is missing", ErrPayload)
	default:
		ev = ignored("GitLab event %q does not start runs (accepted: Push Hook, Tag Push Hook, Merge Request Hook)", name)
	}
	ev.DeliveryID = id
	return ev, nil
}

// --- Gitea ---

func parseGitea(h http.Header, body []byte) (*Event, error) {
	name := h.Get("X-Gitea-Event")
	id := firstHeader(h, "X-Gitea-Delivery")
	var ev *Event
	switch name {
	case "push":
		var p ghPush
		if err := decode("gitea", name, body, &p); err != nil {
			return nil, err
		}
		var err error
		if ev, err = p.event(cmp.Or(p.Pusher.Login, p.Sender.Login)); err != nil {
			return nil, err
		}
	case "create":
		// Gitea sends a push event for the same tag or branch too; starting a
		// run from both would build it twice.
		var p struct {
			Ref     string `json:"ref"`
			RefType string `json:"ref_type"`
		}
		if err := decode("gitea", name, body, &p); err != nil {
			return nil, err
		}
		ev = ignored("Gitea create event for %s %q: runs start from the push event Gitea sends for it too", p.RefType, p.Ref)
	case "pull_request":
		var p ghPREvent
		if err := decode("gitea", name, body, &p); err != nil {
			return nil, err
		}
		if !prAccepted(p.Action, "opened", "synchronized", "synchronize", "reopened") {
			ev = ignored("pull request action %q does not start runs (accepted: opened, synchronized, reopened)", p.Action)
			break
		}
		ev = p.event()
	case "":
		return nil, fmt.Errorf("%w: header X-Gitea-Event is missing", ErrPayload)
	default:
		ev = ignored("Gitea event %q does not start runs (accepted: push, create, pull_request)", name)
	}
	ev.DeliveryID = id
	return ev, nil
}

// --- Bitbucket Cloud ---

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

func parseBitbucket(h http.Header, body []byte) (*Event, error) {
	name := h.Get("X-Event-Key")
	id := firstHeader(h, "X-Request-UUID", "X-Hook-UUID")
	var ev *Event
	switch name {
	case "diagnostics:ping":
		ev = &Event{Kind: KindPing}
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
		if err := decode("bitbucket", name, body, &p); err != nil {
			return nil, err
		}
		if len(p.Push.Changes) == 0 {
			ev = ignored("the push changes no branch or tag")
			break
		}
		// A push of several refs at once comes as one delivery; Runnel builds
		// the first (see docs/triggers.md).
		c := p.Push.Changes[0]
		ref := c.New
		ev = &Event{}
		if ref == nil {
			ev.Deleted = true
			ref = c.Old
		}
		if ref == nil {
			return nil, fmt.Errorf("%w: bitbucket %q event: a change with neither new nor old", ErrPayload, name)
		}
		switch ref.Type {
		case "branch":
			ev.Kind, ev.Trigger.Branch, ev.Trigger.Ref = KindPush, ref.Name, "refs/heads/"+ref.Name
		case "tag", "annotated_tag":
			ev.Kind, ev.Trigger.Tag, ev.Trigger.Ref = KindTag, ref.Name, "refs/tags/"+ref.Name
		default:
			return ignored("Bitbucket change of a %q, not a branch or tag", ref.Type), nil
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
				} `json:"source"`
				Destination struct {
					Branch struct {
						Name string `json:"name"`
					} `json:"branch"`
				} `json:"destination"`
				Links struct {
					HTML struct {
						Href string `json:"href"`
					} `json:"html"`
				} `json:"links"`
			} `json:"pullrequest"`
		}
		if err := decode("bitbucket", name, body, &p); err != nil {
			return nil, err
		}
		pr := p.PR
		ev = &Event{Kind: KindPullRequest}
		ev.Trigger = runnel.Trigger{
			Ref: "refs/heads/" + pr.Source.Branch.Name, Branch: pr.Source.Branch.Name, Commit: pr.Source.Commit.Hash,
			After: pr.Source.Commit.Hash, Actor: p.Actor.name(), Action: strings.TrimPrefix(name, "pullrequest:"),
			PullRequest: runnel.PullRequest{Number: pr.ID, Title: pr.Title, Head: pr.Source.Branch.Name, Base: pr.Destination.Branch.Name, URL: pr.Links.HTML.Href},
		}
	case "":
		return nil, fmt.Errorf("%w: header X-Event-Key is missing", ErrPayload)
	default:
		ev = ignored("Bitbucket event %q does not start runs (accepted: repo:push, pullrequest:created, pullrequest:updated)", name)
	}
	ev.DeliveryID = id
	return ev, nil
}

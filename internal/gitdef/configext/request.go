package configext

import (
	"maps"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/safeurl"
)

// Request is the body of a config extension request, as Drone's
// plugin/config.Request: the repository and the build being started.
type Request struct {
	Repo  Repo  `json:"repo"`
	Build Build `json:"build"`
}

// Repo has the JSON shape of Drone's drone.Repo (without its secret and
// signer fields, which Runnel never sends).
type Repo struct {
	ID            int64  `json:"id"`
	UID           string `json:"uid"`
	UserID        int64  `json:"user_id"`
	Namespace     string `json:"namespace"`
	Name          string `json:"name"`
	Slug          string `json:"slug"`
	SCM           string `json:"scm"`
	HTTPURL       string `json:"git_http_url"`
	SSHURL        string `json:"git_ssh_url"`
	Link          string `json:"link"`
	Branch        string `json:"default_branch"`
	Private       bool   `json:"private"`
	Visibility    string `json:"visibility"`
	Active        bool   `json:"active"`
	Config        string `json:"config_path"`
	Trusted       bool   `json:"trusted"`
	Protected     bool   `json:"protected"`
	IgnoreForks   bool   `json:"ignore_forks"`
	IgnorePulls   bool   `json:"ignore_pull_requests"`
	CancelPulls   bool   `json:"auto_cancel_pull_requests"`
	CancelPush    bool   `json:"auto_cancel_pushes"`
	CancelRunning bool   `json:"auto_cancel_running"`
	Throttle      int64  `json:"throttle"`
	Timeout       int64  `json:"timeout"`
	Counter       int64  `json:"counter"`
	Synced        int64  `json:"synced"`
	Created       int64  `json:"created"`
	Updated       int64  `json:"updated"`
	Version       int64  `json:"version"`
}

// Build has the JSON shape of Drone's drone.Build (without stages, which do
// not exist before the definition is known).
type Build struct {
	ID           int64             `json:"id"`
	RepoID       int64             `json:"repo_id"`
	Trigger      string            `json:"trigger"`
	Number       int64             `json:"number"`
	Parent       int64             `json:"parent,omitempty"`
	Status       string            `json:"status"`
	Error        string            `json:"error,omitempty"`
	Event        string            `json:"event"`
	Action       string            `json:"action"`
	Link         string            `json:"link"`
	Timestamp    int64             `json:"timestamp"`
	Title        string            `json:"title,omitempty"`
	Message      string            `json:"message"`
	Before       string            `json:"before"`
	After        string            `json:"after"`
	Ref          string            `json:"ref"`
	Fork         string            `json:"source_repo"`
	Source       string            `json:"source"`
	Target       string            `json:"target"`
	Author       string            `json:"author_login"`
	AuthorName   string            `json:"author_name"`
	AuthorEmail  string            `json:"author_email"`
	AuthorAvatar string            `json:"author_avatar"`
	Sender       string            `json:"sender"`
	Params       map[string]string `json:"params,omitempty"`
	Cron         string            `json:"cron,omitempty"`
	Deploy       string            `json:"deploy_to,omitempty"`
	DeployID     int64             `json:"deploy_id,omitempty"`
	Debug        bool              `json:"debug"`
	Started      int64             `json:"started"`
	Finished     int64             `json:"finished"`
	Created      int64             `json:"created"`
	Updated      int64             `json:"updated"`
	Version      int64             `json:"version"`
}

// Drone's build events, triggers and statuses.
const (
	EventPush        = "push"
	EventTag         = "tag"
	EventPullRequest = "pull_request"
	EventCron        = "cron"
	EventCustom      = "custom"

	TriggerHook = "@hook"
	TriggerCron = "@cron"

	StatusPending = "pending"
)

// Source is what Runnel knows about the run being started.
type Source struct {
	PipelineID, PipelineName, ProjectID string
	RepoURL, DefaultBranch, ConfigPath  string // ConfigPath: the pipeline file path
	RunNumber                           int64
	Trigger                             runnel.Trigger
	Variables                           map[string]string
	Created                             time.Time
	Link                                string // URL of the run in Runnel's API ("" if unknown)
}

// NewRequest maps Runnel's view onto Drone's shapes.
//
// Repository: namespace and name come from the path of RepoURL (for nested
// groups the namespace is everything before the last segment); without a
// usable RepoURL they are ProjectID (or "runnel") and PipelineName. An SSH
// URL (ssh:// or scp-like user@host:path) goes to git_ssh_url, any other to
// git_http_url (without credentials), and an http(s) URL also gives the link.
//
// Build: the event uses Drone's names (push, tag, pull_request, cron, and
// custom for manual runs); trigger is the actor, "@cron" for cron runs and
// "@hook" for events without an actor; source and target are the pull
// request's head and base, the tag for tags, else the branch (or the default
// branch); the ref defaults to the tag's, the branch's or the default
// branch's.
func NewRequest(s Source) Request {
	t := s.Trigger
	repo := newRepo(s)

	event := droneEvent(t)
	build := Build{
		Number:    s.RunNumber,
		Status:    StatusPending,
		Event:     event,
		Action:    t.Action,
		Link:      s.Link,
		Title:     t.PullRequest.Title,
		Message:   t.Message,
		Before:    t.Before,
		After:     t.Commit,
		Author:    t.Author,
		Sender:    t.Actor,
		Params:    maps.Clone(s.Variables),
		Timestamp: unix(s.Created),
		Created:   unix(s.Created),
		Updated:   unix(s.Created),
	}
	if build.After == "" {
		build.After = t.After
	}
	if len(build.Params) == 0 {
		build.Params = nil
	}

	switch {
	case event == EventCron:
		build.Trigger = TriggerCron
		build.Cron = t.Actor
		if build.Cron == "" {
			build.Cron = "cron"
		}
	case t.Actor != "":
		build.Trigger = t.Actor
	case event != EventCustom:
		build.Trigger = TriggerHook
	}

	build.Ref = t.Ref
	if build.Ref == "" {
		switch {
		case event == EventTag && t.Tag != "":
			build.Ref = "refs/tags/" + t.Tag
		case event == EventPullRequest && t.PullRequest.Number > 0:
			n := strconv.FormatInt(t.PullRequest.Number, 10)
			if strings.EqualFold(t.Provider, "gitlab") {
				build.Ref = "refs/merge-requests/" + n + "/head"
			} else {
				build.Ref = "refs/pull/" + n + "/head"
			}
		case t.Branch != "":
			build.Ref = "refs/heads/" + t.Branch
		case s.DefaultBranch != "":
			build.Ref = "refs/heads/" + s.DefaultBranch
		}
	}

	branch := t.Branch
	if branch == "" {
		branch = strings.TrimPrefix(build.Ref, "refs/heads/")
		if branch == build.Ref {
			branch = ""
		}
	}
	if branch == "" {
		branch = s.DefaultBranch
	}
	switch event {
	case EventPullRequest:
		build.Source, build.Target = t.PullRequest.Head, t.PullRequest.Base
		if build.Source == "" {
			build.Source = branch
		}
		if build.Target == "" {
			build.Target = s.DefaultBranch
		}
	case EventTag:
		tag := t.Tag
		if tag == "" {
			tag = strings.TrimPrefix(build.Ref, "refs/tags/")
		}
		build.Source, build.Target = tag, tag
	default:
		build.Source, build.Target = branch, branch
	}

	return Request{Repo: repo, Build: build}
}

func newRepo(s Source) Repo {
	repo := Repo{
		UID:     s.PipelineID,
		SCM:     "git",
		Branch:  s.DefaultBranch,
		Active:  true,
		Config:  s.ConfigPath,
		Counter: s.RunNumber,
	}
	loc := parseRepoURL(s.RepoURL)
	repo.Namespace, repo.Name = loc.namespace, loc.name
	if loc.ssh {
		repo.SSHURL = loc.clone
	} else {
		repo.HTTPURL = loc.clone
	}
	repo.Link = loc.link
	if repo.Name == "" {
		repo.Name = s.PipelineName
	}
	if repo.Namespace == "" {
		repo.Namespace = s.ProjectID
		if repo.Namespace == "" {
			repo.Namespace = "runnel"
		}
	}
	repo.Slug = repo.Namespace + "/" + repo.Name
	return repo
}

// droneEvent is the Drone event name of a Runnel trigger.
func droneEvent(t runnel.Trigger) string {
	switch {
	case t.Type == runnel.TriggerCron || t.Event == runnel.TriggerCron:
		return EventCron
	case t.Type == runnel.TriggerManual || t.Event == runnel.TriggerManual:
		return EventCustom
	}
	switch t.Event {
	case "pull_request", "merge_request":
		return EventPullRequest
	case "":
	default:
		return t.Event
	}
	switch {
	case t.PullRequest.Number > 0:
		return EventPullRequest
	case t.Tag != "" || strings.HasPrefix(t.Ref, "refs/tags/"):
		return EventTag
	}
	return EventPush
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// repoLocation is what a repository URL tells.
type repoLocation struct {
	namespace, name string
	clone           string // the URL to put in git_http_url or git_ssh_url
	ssh             bool
	link            string // web page, for http(s) URLs
}

// parseRepoURL understands https://host/owner/name(.git),
// ssh://user@host[:port]/owner/name.git, scp-like user@host:owner/name.git
// and plain paths. Credentials are removed from http(s) URLs.
func parseRepoURL(raw string) repoLocation {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return repoLocation{}
	}
	var loc repoLocation
	var path string
	switch {
	case strings.Contains(raw, "://"):
		u, err := url.Parse(raw)
		if err != nil {
			return repoLocation{clone: raw}
		}
		scheme := strings.ToLower(u.Scheme)
		loc.ssh = scheme == "ssh" || scheme == "git+ssh" || scheme == "ssh+git"
		if !loc.ssh {
			u.User = nil
		}
		u.RawQuery, u.Fragment = "", ""
		loc.clone = u.String()
		path = u.Path
		if (scheme == "http" || scheme == "https") && u.Host != "" {
			ns, name := safeurl.SplitRepoPath(path)
			if name != "" {
				web := url.URL{Scheme: scheme, Host: u.Host, Path: "/" + joinPath(ns, name)}
				loc.link = web.String()
			}
		}
	case isSCPLike(raw):
		loc.ssh = true
		loc.clone = raw
		path = raw[strings.Index(raw, ":")+1:]
	default:
		loc.clone = raw
		path = raw
	}
	loc.namespace, loc.name = safeurl.SplitRepoPath(path)
	return loc
}

// isSCPLike reports whether s is [user@]host:path, with the colon before any
// slash (so that a local path or a Windows drive letter is not taken for it).
func isSCPLike(s string) bool {
	colon := strings.Index(s, ":")
	if colon <= 1 { // none, or a drive letter such as C:
		return false
	}
	slash := strings.IndexAny(s, `/\`)
	return slash < 0 || colon < slash
}

func joinPath(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

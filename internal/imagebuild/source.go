package imagebuild

import (
	"net/url"
	"strings"

	"github.com/runnel-ci/runnel/internal/safeurl"
	"github.com/runnel-ci/runnel/internal/store"
)

// defaultHosts are the public forges' hosts.
var defaultHosts = map[string]string{
	ClientGitHub:    "github.com",
	ClientBitbucket: "bitbucket.org",
	ClientGitLab:    "gitlab.com",
}

// host is the forge's host ("" for Simple).
func host(s store.ImageSource) string {
	if s.Client == ClientSimple {
		return ""
	}
	if s.Host != "" {
		return s.Host
	}
	return defaultHosts[s.Client]
}

// CloneURL is the URL builds fetch the source from.
func CloneURL(s store.ImageSource) string {
	if s.Client == ClientSimple {
		return s.CloneURL
	}
	return "https://" + host(s) + "/" + s.Namespace + "/" + s.Name + ".git"
}

// WebURL is the repository's page on its forge ("" for Simple).
func WebURL(s store.ImageSource) string {
	if s.Client == ClientSimple {
		return ""
	}
	return "https://" + host(s) + "/" + s.Namespace + "/" + s.Name
}

// RepoPath is the seed's code_repo_path: namespace/name on a forge; for
// Simple, the clone URL's host and path without ".git" and without any
// user name.
func RepoPath(s store.ImageSource) string {
	if s.Client != ClientSimple {
		return s.Namespace + "/" + s.Name
	}
	u, err := url.Parse(s.CloneURL)
	if err != nil || u.Host == "" {
		return s.CloneURL
	}
	return u.Host + strings.TrimSuffix(u.Path, ".git")
}

// ShownCloneURL is the clone URL as shown to people and in logs: a user
// name in it is hidden.
func ShownCloneURL(s store.ImageSource) string { return safeurl.Redact(CloneURL(s)) }

// CommitURL is a commit's page on the forge ("" for Simple or no commit).
func CommitURL(s store.ImageSource, sha string) string {
	web := WebURL(s)
	if web == "" || sha == "" {
		return ""
	}
	switch s.Client {
	case ClientBitbucket:
		return web + "/commits/" + sha
	case ClientGitLab:
		return web + "/-/commit/" + sha
	default: // GitHub, Gitea
		return web + "/commit/" + sha
	}
}

// RefURL is a branch's or tag's page on the forge ("" for Simple, or a
// glob without a concrete name).
func RefURL(s store.ImageSource, kind, name string) string {
	web := WebURL(s)
	if web == "" || name == "" || IsPattern(name) {
		return ""
	}
	switch s.Client {
	case ClientBitbucket:
		if kind == "tag" {
			return web + "/src/" + name
		}
		return web + "/branch/" + name
	case ClientGitLab:
		return web + "/-/tree/" + name
	case ClientGitea:
		if kind == "tag" {
			return web + "/src/tag/" + name
		}
		return web + "/src/branch/" + name
	default: // GitHub
		return web + "/tree/" + name
	}
}

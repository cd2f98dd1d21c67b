package forges

import (
	"fmt"
	"strings"

	"github.com/runnel-ci/runnel/internal/forge"
)

// HostKinds are the names of the forges whose API Runnel calls on behalf of
// an account (repositories, webhooks, commit statuses).
func HostKinds() []string {
	var names []string
	for _, f := range all {
		if _, ok := f.(forge.Host); ok {
			names = append(names, f.Name())
		}
	}
	return names
}

// Host returns the forge of kind as a forge.Host.
func Host(kind string) (forge.Host, error) {
	if f, ok := Get(kind); ok {
		if h, ok := f.(forge.Host); ok {
			return h, nil
		}
	}
	return nil, fmt.Errorf("forge kind %q has no API Runnel can manage repositories with (accepted: %s)", kind, strings.Join(HostKinds(), ", "))
}

// HostBase is the API base of kind's forge for a repository URL (as
// APIBase), for any forge.Host.
func HostBase(kind, repoURL string) (string, error) {
	h, err := Host(kind)
	if err != nil {
		return "", err
	}
	host, _, err := forge.RepoPath(repoURL)
	if err != nil {
		return "", err
	}
	scheme := "https"
	if s, _, ok := strings.Cut(strings.TrimSpace(repoURL), "://"); ok && strings.EqualFold(s, "http") {
		scheme = "http"
	}
	return h.APIBase(scheme, host), nil
}

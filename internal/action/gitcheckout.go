package action

import (
	_ "embed"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/runnel-ci/runnel/internal/spec"
)

// gitCheckoutScript is the fixed POSIX sh script of actions/git-checkout@v1.
//
//go:embed scripts/git-checkout.sh
var gitCheckoutScript string

// GitCheckout is actions/git-checkout@v1: it fetches one commit of a git
// repository into the workspace with the git CLI, so that every transport git
// supports (file://, http(s)://, ssh) and the machine's own git configuration
// and credentials work.
//
// Without args.repo it checks out the run's repository (RUNNEL_REPO_URL) at the
// run's commit (RUNNEL_COMMIT, else RUNNEL_REF). With an explicit repo that is
// not the run's own, the default ref is the remote's default branch: the run's
// commit would not exist there.
//
// It writes the checked-out commit ID to the step output "commit".
type GitCheckout struct{}

// Info implements Action.
func (GitCheckout) Info() spec.ActionInfo {
	return spec.ActionInfo{
		Uses:          "actions/git-checkout@v1",
		Description:   "Checks out a commit of a git repository into the workspace (detached HEAD). Sets the output `commit`.",
		Actions:       []string{"checkout"},
		DefaultAction: "checkout",
		Inputs: []spec.ActionInput{
			{Name: "repo", Description: "Repository URL (file://, http(s)://, ssh://, user@host:path) or local path.", Default: "the pipeline's source repository ($RUNNEL_REPO_URL)"},
			{Name: "ref", Description: "Branch, tag, full ref (refs/...) or commit ID to check out.", Default: "the run's commit ($RUNNEL_COMMIT, else $RUNNEL_REF), else the remote's default branch"},
			{Name: "depth", Description: "Number of commits of history to fetch; 0 fetches the full history with all branches and tags.", Default: "1"},
			{Name: "path", Description: "Directory inside the workspace to check out into.", Default: "the workspace itself"},
			{Name: "credential", Description: "Id of a source-code credential (/api/v1/credentials) to fetch with: its token is given to git by a credential helper for the credential's host, or its SSH key through GIT_SSH_COMMAND; never in a URL or on a command line.", Default: "none (the machine's own git configuration)"},
		},
	}
}

// Prepare implements Action.
func (g GitCheckout) Prepare(call Call) (Exec, error) {
	a, err := checkCall(g.Info(), call)
	if err != nil {
		return Exec{}, err
	}
	repo, err := a.str("repo", "")
	if err != nil {
		return Exec{}, err
	}
	if _, given := call.Args["repo"]; given && strings.TrimSpace(repo) == "" {
		return Exec{}, fmt.Errorf("args.repo: must be a repository URL or path, got %q (omit it to use the pipeline's source repository)", repo)
	}
	if strings.HasPrefix(repo, "-") || strings.ContainsAny(repo, "\x00\n\r") {
		return Exec{}, fmt.Errorf("args.repo: must be a repository URL or path, got %q", repo)
	}
	ref, err := a.str("ref", "")
	if err != nil {
		return Exec{}, err
	}
	if strings.HasPrefix(ref, "-") || strings.ContainsFunc(ref, func(r rune) bool { return r < ' ' || r == ' ' || r == 0x7f }) {
		return Exec{}, fmt.Errorf("args.ref: must be a branch, tag, full ref or commit ID (no spaces or control characters, not starting with '-'), got %q", ref)
	}
	depth, err := a.nonNegativeInt("depth", 1)
	if err != nil {
		return Exec{}, err
	}
	path, err := a.str("path", "")
	if err != nil {
		return Exec{}, err
	}
	if path != "" {
		if filepath.IsAbs(path) || !filepath.IsLocal(path) {
			return Exec{}, fmt.Errorf("args.path: must be a relative directory inside the workspace, got %q", path)
		}
		path = filepath.Clean(path)
	}
	env := map[string]string{
		"INPUT_REPO":  repo,
		"INPUT_REF":   ref,
		"INPUT_DEPTH": strconv.Itoa(depth),
		"INPUT_PATH":  path,
		// A missing credential must fail the step, not wait for a prompt.
		"GIT_TERMINAL_PROMPT": "0",
	}
	credID, err := a.str("credential", "")
	if err != nil {
		return Exec{}, err
	}
	if credID != "" {
		c, ok := call.Credentials[credID]
		if !ok {
			return Exec{}, fmt.Errorf("args.credential: %q is not a credential this job may use (unknown, deleted, or limited to another project)", credID)
		}
		host := repoHost(repo)
		if c.Host != "" && host != "" && !sameHost(host, c.Host) {
			return Exec{}, fmt.Errorf("args.credential: credential %s is for %s, but the repository is on %s", credID, c.Host, host)
		}
		if c.Kind != "ssh" && strings.HasPrefix(repo, "http://") && !isLoopback(host) {
			return Exec{}, fmt.Errorf("args.credential: refusing to send credential %s over plain http:// to %s; use an https:// URL", credID, host)
		}
		if c.Kind == "ssh" {
			env["RUNNEL_GIT_SSH_KEY"] = c.Secret
		} else {
			env["RUNNEL_GIT_USERNAME"] = c.Username
			env["RUNNEL_GIT_PASSWORD"] = c.Secret
			// The helper answers only for the credential's host.
			if c.Host != "" {
				env["RUNNEL_GIT_CREDENTIAL_URL"] = "https://" + c.Host
				if strings.HasPrefix(repo, "http://") {
					env["RUNNEL_GIT_CREDENTIAL_URL"] = "http://" + c.Host
				}
			}
		}
	}
	return Exec{Shell: "sh", Script: gitCheckoutScript, Env: env}, nil
}

// repoHost returns the host (with its port, if any) of a repository URL or
// scp-like address; "" for a local path or file:// URL.
func repoHost(repo string) string {
	if strings.Contains(repo, "://") {
		u, err := url.Parse(repo)
		if err != nil || u.Scheme == "file" {
			return ""
		}
		return u.Host
	}
	// scp-like: [user@]host:path (a path with a slash before the colon is local).
	at := strings.LastIndex(repo, "@")
	colon := strings.Index(repo, ":")
	if colon < 0 || strings.Contains(repo[:colon], "/") {
		return ""
	}
	return repo[at+1 : colon]
}

// sameHost compares hosts, ignoring the port when one side has none.
func sameHost(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	ha, pa := splitHostPort(a)
	hb, pb := splitHostPort(b)
	return strings.EqualFold(ha, hb) && (pa == "" || pb == "" || pa == pb)
}

func splitHostPort(h string) (string, string) {
	if host, port, err := net.SplitHostPort(h); err == nil {
		return host, port
	}
	return strings.Trim(h, "[]"), ""
}

func isLoopback(h string) bool {
	host, _ := splitHostPort(h)
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

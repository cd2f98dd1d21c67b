package action

import (
	_ "embed"
	"fmt"
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
		Uses:        "actions/git-checkout@v1",
		Description: "Checks out a commit of a git repository into the workspace (detached HEAD). Sets the output `commit`.",
		Inputs: []spec.ActionInput{
			{Name: "repo", Description: "Repository URL (file://, http(s)://, ssh://, user@host:path) or local path.", Default: "the pipeline's source repository ($RUNNEL_REPO_URL)"},
			{Name: "ref", Description: "Branch, tag, full ref (refs/...) or commit ID to check out.", Default: "the run's commit ($RUNNEL_COMMIT, else $RUNNEL_REF), else the remote's default branch"},
			{Name: "depth", Description: "Number of commits of history to fetch; 0 fetches the full history with all branches and tags.", Default: "1"},
			{Name: "path", Description: "Directory inside the workspace to check out into.", Default: "the workspace itself"},
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
	return Exec{
		Shell:  "sh",
		Script: gitCheckoutScript,
		Env: map[string]string{
			"INPUT_REPO":  repo,
			"INPUT_REF":   ref,
			"INPUT_DEPTH": strconv.Itoa(depth),
			"INPUT_PATH":  path,
			// A missing credential must fail the step, not wait for a prompt.
			"GIT_TERMINAL_PROMPT": "0",
		},
	}, nil
}

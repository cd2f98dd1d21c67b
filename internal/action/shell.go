package action

import (
	"fmt"
	"strings"

	"github.com/runnel-ci/runnel/internal/spec"
)

// Shell is actions/shell@v1: it runs the user's script as given. It exists so
// that `run:` steps and `uses:` steps go through the same machinery.
type Shell struct{}

// Info implements Action.
func (Shell) Info() spec.ActionInfo {
	return spec.ActionInfo{
		Uses:          "actions/shell@v1",
		Description:   "Runs a shell script in the job's workspace.",
		Actions:       []string{"run"},
		DefaultAction: "run",
		Inputs: []spec.ActionInput{
			{Name: "script", Description: "The script to run.", Required: true},
			{Name: "shell", Description: `Interpreter: "bash" (bash -eo pipefail), "sh" (sh -e), or a command template in which {0} is the script file, e.g. "python3 {0}". Empty: bash when installed, else sh.`},
		},
	}
}

// Prepare implements Action. Here the script is the user's own text, so it is
// passed through unchanged.
func (s Shell) Prepare(call Call) (Exec, error) {
	a, err := checkCall(s.Info(), call)
	if err != nil {
		return Exec{}, err
	}
	script, err := a.str("script", "")
	if err != nil {
		return Exec{}, err
	}
	if strings.TrimSpace(script) == "" {
		return Exec{}, fmt.Errorf("args.script: must be a non-empty script, got %q", script)
	}
	shell, err := a.str("shell", "")
	if err != nil {
		return Exec{}, err
	}
	if shell != "" && strings.TrimSpace(shell) == "" {
		return Exec{}, fmt.Errorf(`args.shell: must be "bash", "sh" or a command template such as "python3 {0}", got %q`, shell)
	}
	return Exec{Shell: shell, Script: script, Env: map[string]string{}}, nil
}

// Package action owns the built-in actions a step can call with `uses`, and the
// registry that resolves them. An action turns a step's evaluated arguments into a
// script the backend runs, so the same action works on every backend.
package action

import (
	"fmt"
	"sort"
	"sync"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/spec"
)

// Call is one invocation of an action by a step, with expressions already
// evaluated.
type Call struct {
	// Action is the operation selected, one of Info().Actions: the step's
	// `action` field, or the action's DefaultAction when the step omits it
	// (the executor fills it in; "" is read as the default too).
	Action string
	// Args are the step's `args`, values are string, bool, float64/int, []any or
	// map[string]any.
	Args map[string]any
	// Credentials the job may use, by id (those its definition names).
	Credentials map[string]runnel.Credential
}

// Exec is what a backend runs for an action call.
type Exec struct {
	// Shell as in backend.Step: "bash", "sh", "" or a command template.
	Shell  string
	Script string
	// Env carries the arguments to the script (never interpolated into the script
	// text, so no argument can inject shell code).
	Env map[string]string
	// WorkingDir relative to the workspace; "" keeps the step's own.
	WorkingDir string
}

// Action is a built-in or plugin action.
type Action interface {
	Info() spec.ActionInfo
	// Prepare validates the evaluated arguments and returns what to run. Errors
	// name the argument and say what is accepted.
	Prepare(call Call) (Exec, error)
}

// Registry maps `uses` references to actions. It is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	actions map[string]Action
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{actions: map[string]Action{}} }

// Register adds an action under its Info().Uses name; registering a name twice
// is an error.
func (r *Registry) Register(a Action) error {
	name := a.Info().Uses
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.actions[name]; dup {
		return fmt.Errorf("register action %s: already registered", name)
	}
	r.actions[name] = a
	return nil
}

// Lookup returns the action for a `uses` reference.
func (r *Registry) Lookup(uses string) (Action, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.actions[uses]
	return a, ok
}

// LookupAction implements spec.ActionCatalog.
func (r *Registry) LookupAction(uses string) (spec.ActionInfo, bool) {
	a, ok := r.Lookup(uses)
	if !ok {
		return spec.ActionInfo{}, false
	}
	return a.Info(), true
}

// ActionNames implements spec.ActionCatalog.
func (r *Registry) ActionNames() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.actions))
	for n := range r.actions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
